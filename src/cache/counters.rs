//! The memory store's generation counters: a fixed table of slots, a
//! token's counter being the slot its hash picks.
//!
//! A table instead of a cache of counters because a counter must never be
//! lost: an evicted counter would have to come back with a value no entry
//! carries, and telling "evicted" from "never bumped" costs an insertion per
//! new token, which a flood of unique URLs pays on every miss. Here nothing
//! is evicted and a token nobody bumped costs nothing, not even memory:
//! slots are allocated a chunk at a time, on the first bump that lands in
//! the chunk, and an unallocated chunk reads as zero.
//!
//! Two tokens may share a slot. Then a bump of either changes the
//! generation of both, which can only invalidate more, never less: the
//! table is sized so that this stays rare (see [`Counters::with_budget`]).

use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Hasher;
use super::Token;

/// Slots allocated at once: 8 KiB.
const CHUNK: usize = 1024;
/// The fewest slots a table has, for tiny caches: 512 KiB if all touched.
const MIN_SLOTS: usize = 1 << 16;
/// What a slot costs.
const SLOT_BYTES: u64 = 8;

/// Generation counters for tokens. Lock-free; reads never allocate.
pub(super) struct Counters {
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
    /// Source of bumped values: strictly increasing from 1 (an unbumped
    /// slot reads 0), so a bump never repeats a value an entry may carry.
    next: AtomicU64,
    /// `slots - 1`; the slot count is a power of two.
    mask: u64,
    hasher: Hasher,
}

impl Counters {
    /// A table that holds at most `bytes` of slots once every slot has been
    /// bumped (and at least [`MIN_SLOTS`]). With a fifth of `max_bytes`,
    /// a slot per 40 bytes of entries: even small entries are outnumbered
    /// several times, so a bump rarely reaches an entry it does not name.
    pub(super) fn with_budget(bytes: u64) -> Self {
        let wanted = usize::try_from(bytes / SLOT_BYTES).unwrap_or(usize::MAX);
        let slots = prev_power_of_two(wanted).max(MIN_SLOTS);
        Self {
            chunks: (0..slots / CHUNK).map(|_| OnceLock::new()).collect(),
            next: AtomicU64::new(1),
            mask: slots as u64 - 1,
            hasher: Hasher::default(),
        }
    }

    /// How many slots the table has.
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.mask as usize + 1
    }

    /// The slot `token` picks.
    pub(super) fn slot(&self, token: &Token) -> usize {
        (self.hasher.hash_one(token) & self.mask) as usize
    }

    /// The current generation of `token`: zero until it is first bumped.
    pub(super) fn get(&self, token: &Token) -> u64 {
        let slot = self.slot(token);
        self.chunks[slot / CHUNK]
            .get()
            .map_or(0, |chunk| chunk[slot % CHUNK].load(Ordering::Acquire))
    }

    /// Gives `token` a new generation, one no entry can carry.
    pub(super) fn bump(&self, token: &Token) {
        let value = self.next.fetch_add(1, Ordering::Relaxed);
        self.raise(token, value);
    }

    /// Moves `token`'s generation to `value` unless it is already past it,
    /// so concurrent bumps of one slot leave it at the newest value: a slot
    /// never returns to a value an entry may carry.
    fn raise(&self, token: &Token, value: u64) {
        let slot = self.slot(token);
        self.chunks[slot / CHUNK].get_or_init(|| (0..CHUNK).map(|_| AtomicU64::new(0)).collect())
            [slot % CHUNK]
            .fetch_max(value, Ordering::AcqRel);
    }

    /// Bytes of slots allocated so far.
    #[cfg(test)]
    pub(super) fn allocated_bytes(&self) -> u64 {
        let chunks = self.chunks.iter().filter(|c| c.get().is_some()).count();
        (chunks * CHUNK) as u64 * SLOT_BYTES
    }
}

fn prev_power_of_two(n: usize) -> usize {
    match n {
        0 => 1,
        n => 1 << (usize::BITS - 1 - n.leading_zeros()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_to_the_budget_in_powers_of_two() {
        assert_eq!(Counters::with_budget(0).slots(), MIN_SLOTS);
        assert_eq!(Counters::with_budget(64 << 20).slots(), 8 << 20);
        // 100 MiB of slots would be 13.1M: rounded down, never past it.
        assert_eq!(Counters::with_budget(100 << 20).slots(), 8 << 20);
        assert_eq!(prev_power_of_two(1), 1);
        assert_eq!(prev_power_of_two(1023), 512);
    }

    #[test]
    fn unbumped_tokens_read_zero_and_cost_no_slots() {
        let c = Counters::with_budget(1 << 20);
        for n in 0..1000 {
            assert_eq!(c.get(&Token::url(&format!("/{n}"))), 0);
        }
        assert_eq!(c.allocated_bytes(), 0);
        c.raise(&Token::route("r"), 7);
        assert_eq!(c.get(&Token::route("r")), 7);
        assert_eq!(c.allocated_bytes(), CHUNK as u64 * SLOT_BYTES);
    }

    #[test]
    fn a_slot_only_moves_forward() {
        let c = Counters::with_budget(0);
        let t = Token::url("/a");
        c.raise(&t, 9);
        c.raise(&t, 5); // a bump that drew its value earlier but stored later
        assert_eq!(c.get(&t), 9);
        c.raise(&t, 10);
        assert_eq!(c.get(&t), 10);
    }

    #[test]
    fn tokens_sharing_a_slot_are_bumped_together() {
        let c = Counters::with_budget(0);
        let a = Token::url("/a");
        let b = (0..1_000_000)
            .map(|n| Token::url(&format!("/{n}")))
            .find(|t| c.slot(t) == c.slot(&a))
            .expect("65536 slots: a million tokens find a shared one");
        c.raise(&b, 3);
        assert_eq!(c.get(&a), 3, "a shared slot invalidates more, never less");
    }
}
