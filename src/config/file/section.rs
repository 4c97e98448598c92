//! The [`section!`] macro and the readers its fields name.
//!
//! A reader takes a value's node and its dotted path (for problem
//! messages) and returns the field's value: `None` (or empty) after
//! recording a problem, so decoding carries on.

use super::yaml::{self, Loc, MapReader, Node, Problems, loc_of};

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Located<T> {
    /// The value.
    pub value: T,
    /// Its place in the file.
    pub loc: Loc,
}

/// A mapping of known keys, as [`section!`] declares one.
pub(crate) trait Section: Default {
    /// The keys it knows, for "unknown key" problems.
    fn keys() -> Vec<&'static str>;
    /// Reads its keys from `m`.
    fn read(m: &mut MapReader<'_>, p: &mut Problems) -> Self;
    /// Where it starts in the file.
    fn set_loc(&mut self, loc: Loc);
}

/// Declares a config section: the struct, with a `loc` field for where the
/// section starts, and its [`Section`] impl. Each field is
/// `name: Type = reader`, its key the field's name (without `r#`), its
/// value `reader(node, path, problems) -> Type` when the key is present
/// and `Type::default()` when not. `with field: Type` after the fields
/// reads a section of its own from the same mapping (a route's freshness
/// keys, shared with `defaults:`).
macro_rules! section {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $read:expr ),* $(,)?
        }
        $( with $with:ident : $wty:ty )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            /// Where the section starts.
            pub loc: Loc,
            $(
                #[doc = concat!("`", stringify!($field), "`")]
                $(#[$fmeta])*
                pub $field: $ty,
            )*
            $(
                #[doc = concat!("Keys read by [`", stringify!($wty), "`].")]
                pub $with: $wty,
            )?
        }

        impl section::Section for $name {
            fn keys() -> Vec<&'static str> {
                #[allow(unused_mut)]
                let mut keys = vec![$( section::key(stringify!($field)) ),*];
                $( keys.extend(<$wty as section::Section>::keys()); )?
                keys
            }

            fn read(m: &mut MapReader<'_>, p: &mut Problems) -> Self {
                Self {
                    loc: Loc::default(),
                    $( $field: section::field(m, stringify!($field), p, $read), )*
                    $( $with: <$wty as section::Section>::read(m, p), )?
                }
            }

            fn set_loc(&mut self, loc: Loc) {
                self.loc = loc;
            }
        }
    };
}

/// The key a field reads: its name without `r#`.
pub(super) fn key(field: &'static str) -> &'static str {
    field.strip_prefix("r#").unwrap_or(field)
}

/// The value of the key `field` names in `m`, read by `read`, or the
/// default when the key is absent.
pub(super) fn field<T: Default>(
    m: &mut MapReader<'_>,
    field: &'static str,
    p: &mut Problems,
    read: impl Fn(&Node, &str, &mut Problems) -> T,
) -> T {
    let key = key(field);
    let path = m.child(key);
    m.get(key)
        .map_or_else(T::default, |node| read(node, &path, p))
}

/// A section read from a mapping node; `None` (a problem recorded) when
/// the node is not a mapping.
fn section<S: Section>(node: &Node, path: &str, p: &mut Problems) -> Option<S> {
    let mut m = MapReader::new(node, path, p)?;
    let mut section = S::read(&mut m, p);
    section.set_loc(loc_of(node));
    m.finish(&S::keys(), p);
    Some(section)
}

/// Reader: a list of sections, leaving out items that are not mappings.
pub(super) fn sections<S: Section>(node: &Node, path: &str, p: &mut Problems) -> Vec<S> {
    each(section::<S>)(node, path, p)
}

/// Reader: a section, empty when the node is not a mapping.
pub(super) fn sub<S: Section>(node: &Node, path: &str, p: &mut Problems) -> S {
    section(node, path, p).unwrap_or_default()
}

/// Reader: a section with its place, absent when the node is not a mapping.
pub(super) fn sub_at<S: Section>(node: &Node, path: &str, p: &mut Problems) -> Option<Located<S>> {
    at(section::<S>)(node, path, p)
}

/// Reader: what `read` reads, with its place.
pub(super) fn at<T>(
    read: impl Fn(&Node, &str, &mut Problems) -> Option<T>,
) -> impl Fn(&Node, &str, &mut Problems) -> Option<Located<T>> {
    move |node, path, p| {
        read(node, path, p).map(|value| Located {
            value,
            loc: loc_of(node),
        })
    }
}

/// Reader: a list, each item read by `read` at `path[i]`; items it cannot
/// read are left out.
pub(super) fn each<T>(
    read: impl Fn(&Node, &str, &mut Problems) -> Option<T>,
) -> impl Fn(&Node, &str, &mut Problems) -> Vec<T> {
    move |node, path, p| {
        let Some(items) = yaml::list(node, path, p) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| read(n, &format!("{path}[{i}]"), p))
            .collect()
    }
}

/// Reader: a whole number from 0 to `max`.
pub(super) fn count(max: u64) -> impl Fn(&Node, &str, &mut Problems) -> Option<u64> {
    move |node, path, p| yaml::integer(node, path, max, p)
}

/// Reader: one of `choices`, by its word.
pub(super) fn choice<T: Copy>(
    choices: &'static [(&'static str, T)],
) -> impl Fn(&Node, &str, &mut Problems) -> Option<T> {
    move |node, path, p| yaml::one_of(node, path, choices, p)
}
