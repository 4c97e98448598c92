//! Route matching: normalized path -> the first rule whose template matches,
//! plus its captures. Pure: no I/O, no config loading.
//!
//! Config order decides ("first match wins"), while matchit, which does the
//! matching, prefers the most specific route and refuses some pairs of
//! routes in one router (`/a/{x}` beside `/a/{*rest}`). So [`RouteTable`]
//! spreads templates over as few matchit routers ("layers") as it can, takes
//! the lowest-numbered candidate, then checks only the earlier rules known to
//! overlap that candidate. A typical table is one layer and no checks.

use super::template::{PatternError, Template, covers, overlaps};

/// Rules in config order, matched first-match-wins.
#[derive(Debug)]
pub struct RouteTable<T> {
    values: Vec<T>,
    templates: Vec<Template>,
    /// matchit routers holding every template; value = index into `values`.
    layers: Vec<matchit::Router<usize>>,
    /// One router per template, to test a single rule.
    singles: Vec<matchit::Router<()>>,
    /// Per rule: the earlier rules that can match some path it matches.
    earlier_overlaps: Vec<Box<[usize]>>,
}

/// The rule a path matched, with the captured segments.
#[derive(Debug)]
pub struct RouteMatch<'t, 'p, T> {
    /// Position of the rule in config order.
    pub index: usize,
    /// The rule.
    pub value: &'t T,
    /// `(name, raw value)` for each capture, in template order.
    pub captures: Captures<'t, 'p>,
}

/// The captures of one match.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captures<'t, 'p>(Vec<(&'t str, &'p str)>);

/// Rules that earlier rules get in the way of, for `cachecar check`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shadowing {
    /// `(rule, earlier rule)`: every path the rule matches goes to the earlier one.
    pub unreachable: Vec<(usize, usize)>,
    /// `(later, earlier)`: some paths match both and go to the earlier one.
    pub overlapping: Vec<(usize, usize)>,
}

// === impl RouteTable ===

impl<T> RouteTable<T> {
    /// Builds a table from rules in config order.
    ///
    /// # Errors
    ///
    /// Only if matchit refuses a template that `Template::parse` accepted,
    /// which would be a bug; the message names the template.
    pub fn new(rules: Vec<(Template, T)>) -> Result<Self, PatternError> {
        let mut values = Vec::with_capacity(rules.len());
        let mut templates = Vec::with_capacity(rules.len());
        let mut layers: Vec<matchit::Router<usize>> = Vec::new();
        let mut singles = Vec::with_capacity(rules.len());
        for (index, (template, value)) in rules.into_iter().enumerate() {
            let mut single = matchit::Router::new();
            single
                .insert(template.as_str(), ())
                .map_err(|e| PatternError(format!("`{template}`: {e}")))?;
            singles.push(single);
            let placed = layers
                .iter_mut()
                .any(|layer| layer.insert(template.as_str(), index).is_ok());
            if !placed {
                let mut layer = matchit::Router::new();
                layer
                    .insert(template.as_str(), index)
                    .map_err(|e| PatternError(format!("`{template}`: {e}")))?;
                layers.push(layer);
            }
            templates.push(template);
            values.push(value);
        }
        let earlier_overlaps = (0..templates.len())
            .map(|i| {
                (0..i)
                    .filter(|&j| overlaps(templates[j].segments(), templates[i].segments()))
                    .collect()
            })
            .collect();
        Ok(Self {
            values,
            templates,
            layers,
            singles,
            earlier_overlaps,
        })
    }

    /// The first rule matching `path`, in config order.
    pub fn find<'t, 'p>(&'t self, path: &'p str) -> Option<RouteMatch<'t, 'p, T>> {
        let mut best: Option<(usize, matchit::Params<'t, 'p>)> = None;
        for layer in &self.layers {
            if let Ok(m) = layer.at(path)
                && best.as_ref().is_none_or(|(b, _)| *m.value < *b)
            {
                best = Some((*m.value, m.params));
            }
        }
        let (candidate, params) = best?;
        for &earlier in self.earlier_overlaps[candidate].iter() {
            if let Ok(m) = self.singles[earlier].at(path) {
                return Some(self.matched(earlier, &m.params));
            }
        }
        Some(self.matched(candidate, &params))
    }

    /// Every rule matching `path`, in config order.
    pub fn find_all<'t, 'p>(
        &'t self,
        path: &'p str,
    ) -> impl Iterator<Item = RouteMatch<'t, 'p, T>> + use<'t, 'p, T> {
        (0..self.values.len()).filter_map(move |i| {
            let m = self.singles[i].at(path).ok()?;
            Some(self.matched(i, &m.params))
        })
    }

    fn matched<'t, 'p>(
        &'t self,
        index: usize,
        params: &matchit::Params<'t, 'p>,
    ) -> RouteMatch<'t, 'p, T> {
        RouteMatch {
            index,
            value: &self.values[index],
            captures: Captures(params.iter().collect()),
        }
    }

    /// The rules in config order.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// The templates in config order.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// True when the table has no rules.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// For `cachecar check`: rules covered by one earlier rule, and pairs
    /// that merely overlap.
    pub fn shadowing(&self) -> Shadowing {
        let mut unreachable = Vec::new();
        let mut overlapping = Vec::new();
        for (i, earlier) in self.earlier_overlaps.iter().enumerate() {
            let covering = earlier
                .iter()
                .find(|&&j| covers(self.templates[j].segments(), self.templates[i].segments()));
            match covering {
                Some(&j) => unreachable.push((i, j)),
                None => overlapping.extend(earlier.iter().map(|&j| (i, j))),
            }
        }
        Shadowing {
            unreachable,
            overlapping,
        }
    }
}

// === impl Captures ===

impl<'t, 'p> Captures<'t, 'p> {
    /// The value captured under `name`.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// Captures from `(name, value)` pairs, for tests and tools.
    pub fn from_pairs(pairs: Vec<(&'t str, &'p str)>) -> Self {
        Self(pairs)
    }

    /// All captures in template order.
    pub fn iter(&self) -> impl Iterator<Item = (&'t str, &'p str)> + '_ {
        self.0.iter().copied()
    }
}

#[cfg(test)]
mod tests;
