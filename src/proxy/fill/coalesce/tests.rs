use super::*;

fn key(n: u8) -> KeyHash {
    KeyHash([n; 32])
}

fn stamp(purges: u64) -> Stamp {
    Stamp {
        generations: Some(vec![7, 9]),
        tag_epoch: 3,
        purges,
    }
}

#[tokio::test]
async fn followers_get_the_leaders_outcome() {
    let c = Coalescer::default();
    let Join::Leader(flight) = c.join(key(1), stamp(0)) else {
        panic!("first joiner leads");
    };
    let followers: Vec<_> = (0..10)
        .map(|_| match c.join(key(1), stamp(0)) {
            Join::Follower(f) => tokio::spawn(f.wait(Duration::from_secs(5))),
            Join::Leader(_) => panic!("second joiner follows"),
        })
        .collect();
    assert!(c.in_flight(&key(1)));
    flight.complete(Shared::Failed(StatusCode::BAD_GATEWAY));
    assert!(!c.in_flight(&key(1)));
    for f in followers {
        assert!(matches!(f.await.unwrap(), Waited::Done(Shared::Failed(s)) if s == 502));
    }
}

#[tokio::test]
async fn uncacheable_outcomes_are_remembered_until_a_store() {
    let c = Coalescer::default();
    let Join::Leader(flight) = c.join(key(2), stamp(0)) else {
        panic!()
    };
    flight.complete(Shared::Uncacheable);
    assert!(c.is_uncacheable(&key(2)));
    assert!(!c.is_uncacheable(&key(3)));
    c.clear_uncacheable(&key(2));
    assert!(!c.is_uncacheable(&key(2)));
}

#[tokio::test]
async fn an_abandoned_flight_releases_its_followers() {
    let c = Coalescer::default();
    let Join::Leader(flight) = c.join(key(4), stamp(0)) else {
        panic!()
    };
    let Join::Follower(f) = c.join(key(4), stamp(0)) else {
        panic!()
    };
    drop(flight);
    assert!(matches!(
        f.wait(Duration::from_secs(5)).await,
        Waited::Abandoned
    ));
    assert!(
        matches!(c.join(key(4), stamp(0)), Join::Leader(_)),
        "a new flight can start"
    );
}

#[tokio::test]
async fn followers_give_up_after_the_wait_timeout() {
    let c = Coalescer::default();
    let _flight = c.join(key(5), stamp(0));
    let Join::Follower(f) = c.join(key(5), stamp(0)) else {
        panic!()
    };
    let started = std::time::Instant::now();
    assert!(matches!(
        f.wait(Duration::from_millis(50)).await,
        Waited::TimedOut
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_request_with_another_stamp_leads_a_new_flight() {
    let c = Coalescer::default();
    let Join::Leader(old) = c.join(key(6), stamp(0)) else {
        panic!()
    };
    let Join::Follower(old_follower) = c.join(key(6), stamp(0)) else {
        panic!("same stamp follows")
    };
    // A purge since: neither the purge count nor other generations join.
    let Join::Leader(new) = c.join(key(6), stamp(1)) else {
        panic!("a later purge count leads")
    };
    let other = Stamp {
        generations: Some(vec![7, 10]),
        tag_epoch: 3,
        purges: 1,
    };
    let Join::Leader(_third) = c.join(key(6), other) else {
        panic!("other generations lead")
    };
    let unknown = Stamp {
        generations: None,
        tag_epoch: 3,
        purges: 1,
    };
    assert!(matches!(c.join(key(6), unknown), Join::Leader(_)));

    // The newest flight is the one to join; the old one ends without
    // taking it out of the registry, and its followers get its outcome.
    drop(new);
    let Join::Leader(newest) = c.join(key(6), stamp(1)) else {
        panic!()
    };
    let Join::Follower(_) = c.join(key(6), stamp(1)) else {
        panic!("joins the newest")
    };
    old.complete(Shared::Failed(StatusCode::BAD_GATEWAY));
    assert!(c.in_flight(&key(6)), "the newer flight is still registered");
    assert!(matches!(
        old_follower.wait(Duration::from_secs(5)).await,
        Waited::Done(Shared::Failed(_))
    ));
    drop(newest);
}

#[test]
fn a_request_after_a_tag_purge_leads_a_new_flight() {
    let c = Coalescer::default();
    let Join::Leader(_first) = c.join(key(8), stamp(1)) else {
        panic!("the first leads")
    };
    let tags_purged = Stamp {
        tag_epoch: 4,
        ..stamp(1)
    };
    let Join::Leader(_second) = c.join(key(8), tags_purged.clone()) else {
        panic!("a tag purge since the flight began leads")
    };
    assert!(
        matches!(c.join(key(8), tags_purged), Join::Follower(_)),
        "a request stamped like the newest flight joins it"
    );
}
