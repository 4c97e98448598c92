//! The demo API's handlers and its in-memory data.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::proxy::body::Body;

/// Largest request body the demo API reads.
const MAX_BODY: usize = 64 * 1024;

/// The demo API's state. Cheap to clone.
#[derive(Clone)]
pub struct DemoApi {
    data: Arc<Mutex<Data>>,
    latency: Duration,
}

struct Data {
    next_id: u64,
    conversations: BTreeMap<u64, Conversation>,
}

#[derive(Clone, Serialize)]
struct Conversation {
    id: u64,
    owner: String,
    title: String,
    messages: Vec<Message>,
}

#[derive(Clone, Serialize)]
struct Message {
    id: usize,
    text: String,
}

#[derive(Deserialize)]
struct TitleBody {
    title: String,
}

#[derive(Deserialize)]
struct TextBody {
    text: String,
}

impl DemoApi {
    /// A demo API with two users' worth of data.
    pub fn new(latency: Duration) -> Self {
        let mut conversations = BTreeMap::new();
        let seed = [
            (1, "alice", "Trip to Lisbon"),
            (2, "alice", "Quarterly report"),
            (3, "bob", "Bike repair"),
        ];
        for (id, owner, title) in seed {
            conversations.insert(
                id,
                Conversation {
                    id,
                    owner: owner.into(),
                    title: title.into(),
                    messages: vec![Message {
                        id: 1,
                        text: format!("Hello from {owner}"),
                    }],
                },
            );
        }
        Self {
            data: Arc::new(Mutex::new(Data {
                next_id: 4,
                conversations,
            })),
            latency,
        }
    }

    /// Serves on `listener` until `stop` fires.
    pub async fn serve(self, listener: TcpListener, stop: CancellationToken) {
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let api = self.clone();
            async move { Ok::<_, Infallible>(api.handle(req).await) }
        });
        crate::listener::serve(
            "demo-api",
            listener,
            move |_, _| service.clone(),
            crate::config::Limits::default(),
            crate::listener::Winding::stopped_by(stop),
            Duration::from_secs(1),
        )
        .await;
    }

    /// Answers one request.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<crate::proxy::upstream::BoxError>,
    {
        if request.uri().path() == "/healthz" {
            return reply(StatusCode::OK, json!({ "status": "ok" }));
        }
        if !self.latency.is_zero() {
            // A zero sleep still waits for the next 1 ms timer tick.
            tokio::time::sleep(self.latency).await;
        }
        let user = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "unreadable body" }),
                );
            }
        };
        match segments.as_slice() {
            ["api", "documents", rest @ ..] if !rest.is_empty() && method == Method::GET => {
                document(&rest.join("/"))
            }
            ["api", "conversations", ..] => match user {
                Some(user) => self.conversations(&method, &segments[2..], &user, &body),
                None => reply(
                    StatusCode::UNAUTHORIZED,
                    json!({ "error": "send Authorization: Bearer <user>" }),
                ),
            },
            _ => reply(StatusCode::NOT_FOUND, json!({ "error": "not found" })),
        }
    }

    fn conversations(
        &self,
        method: &Method,
        rest: &[&str],
        user: &str,
        body: &[u8],
    ) -> Response<Body> {
        // A poisoned lock means a handler panicked mid-update; the demo data
        // is still usable, so carry on with it.
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let id = rest.first().and_then(|s| s.parse::<u64>().ok());
        match (method.as_str(), rest, id) {
            ("GET", [], _) => data.list(user),
            ("POST", [], _) => data.create(user, body),
            (_, [_], Some(id)) | (_, [_, "messages"], Some(id)) => {
                data.one(method, rest.len() == 2, id, user, body)
            }
            _ => reply(StatusCode::NOT_FOUND, json!({ "error": "not found" })),
        }
    }
}

impl Data {
    /// `GET /api/conversations`: the user's.
    fn list(&self, user: &str) -> Response<Body> {
        let list: Vec<_> = self
            .conversations
            .values()
            .filter(|c| c.owner == user)
            .map(|c| json!({ "id": c.id, "title": c.title }))
            .collect();
        reply(
            StatusCode::OK,
            json!({ "user": user, "conversations": list }),
        )
    }

    /// `POST /api/conversations` with `{"title": ...}`.
    fn create(&mut self, user: &str, body: &[u8]) -> Response<Body> {
        let Ok(b) = serde_json::from_slice::<TitleBody>(body) else {
            return bad_body("{\"title\": \"...\"}");
        };
        let id = self.next_id;
        self.next_id += 1;
        let c = Conversation {
            id,
            owner: user.into(),
            title: b.title,
            messages: Vec::new(),
        };
        self.conversations.insert(id, c.clone());
        reply(StatusCode::CREATED, json!(c))
    }

    /// `/api/conversations/{id}`, or its `/messages` when `messages`.
    fn one(
        &mut self,
        method: &Method,
        messages: bool,
        id: u64,
        user: &str,
        body: &[u8],
    ) -> Response<Body> {
        let Some(c) = self.conversations.get_mut(&id).filter(|c| c.owner == user) else {
            return reply(
                StatusCode::NOT_FOUND,
                json!({ "error": "no such conversation" }),
            );
        };
        match (method.as_str(), messages) {
            ("GET", false) => reply(StatusCode::OK, json!(c)),
            ("PUT", false) => match serde_json::from_slice::<TitleBody>(body) {
                Ok(b) => {
                    c.title = b.title;
                    reply(StatusCode::OK, json!(c))
                }
                Err(_) => bad_body("{\"title\": \"...\"}"),
            },
            ("DELETE", false) => {
                self.conversations.remove(&id);
                reply(StatusCode::OK, json!({ "deleted": id }))
            }
            ("GET", true) => reply(
                StatusCode::OK,
                json!({ "conversation": id, "messages": c.messages }),
            ),
            ("POST", true) => match serde_json::from_slice::<TextBody>(body) {
                Ok(b) => {
                    let m = Message {
                        id: c.messages.len() + 1,
                        text: b.text,
                    };
                    c.messages.push(m.clone());
                    reply(StatusCode::CREATED, json!(m))
                }
                Err(_) => bad_body("{\"text\": \"...\"}"),
            },
            _ => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "error": "method not allowed" }),
            ),
        }
    }
}

fn document(path: &str) -> Response<Body> {
    let docs = [
        ("index", "Welcome to the demo documents."),
        ("guides/caching", "How cachecar caches GET responses."),
        ("guides/invalidation", "How mutations purge cached entries."),
    ];
    match docs.iter().find(|(p, _)| *p == path) {
        Some((p, text)) => reply(StatusCode::OK, json!({ "path": p, "text": text })),
        None => reply(
            StatusCode::NOT_FOUND,
            json!({ "error": "no such document" }),
        ),
    }
}

fn bad_body(expected: &str) -> Response<Body> {
    reply(
        StatusCode::BAD_REQUEST,
        json!({ "error": format!("expected a JSON body like {expected}") }),
    )
}

fn reply(status: StatusCode, mut value: serde_json::Value) -> Response<Body> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "generated_at".into(),
            json!(format!("{}.{:03}", now.as_secs(), now.subsec_millis())),
        );
    }
    crate::admin::json_response(status, &value)
}

#[cfg(test)]
mod tests {
    use http_body_util::Empty;

    use super::*;

    async fn call(
        api: &DemoApi,
        method: Method,
        path: &str,
        user: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(u) = user {
            req = req.header("authorization", format!("Bearer {u}"));
        }
        let resp = api.handle(req.body(Empty::<Bytes>::new()).unwrap()).await;
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn demo_data_is_per_user() {
        let api = DemoApi::new(Duration::ZERO);
        let (s, alice) = call(&api, Method::GET, "/api/conversations", Some("alice")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(alice["conversations"].as_array().unwrap().len(), 2);
        let (_, bob) = call(&api, Method::GET, "/api/conversations", Some("bob")).await;
        assert_eq!(bob["conversations"].as_array().unwrap().len(), 1);
        let (s, _) = call(&api, Method::GET, "/api/conversations/3", Some("alice")).await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "alice cannot read bob's conversation"
        );
        let (s, _) = call(&api, Method::GET, "/api/conversations", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, doc) = call(&api, Method::GET, "/api/documents/guides/caching", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(doc["path"], "guides/caching");
        let (s, _) = call(&api, Method::DELETE, "/api/conversations/1", Some("alice")).await;
        assert_eq!(s, StatusCode::OK);
        let (_, alice) = call(&api, Method::GET, "/api/conversations", Some("alice")).await;
        assert_eq!(alice["conversations"].as_array().unwrap().len(), 1);
    }
}
