//! Which of many literals occur in a text, found by a rare four-byte piece of each.
//!
//! The prefilter's automata walk a text byte by byte, a few nanoseconds a byte once the
//! literals are many (a script block field's automaton holds some 960 literals, a command
//! line's thousands) and no vectorized search can rule the text out first. Here each literal
//! of four bytes or more is represented by one of its four-byte pieces (its anchor): the one
//! fewest other literals share, then the one of rarest bytes by a rough ranking of bytes in
//! scripts and command lines. A scan reads the text four bytes at a time and tests a small
//! Bloom filter of the anchors: a byte costs a load, a multiplication and a bit test, and only
//! where the filter lets the four bytes through are the literals with that anchor compared
//! with the text around them. Literals of one to three bytes are looked up by their first one
//! or two bytes in bit sets of their own.
//!
//! Every occurrence of a literal holds its anchor at a fixed distance from the literal's
//! start, so every literal that occurs is reported, and only those.
//!
//! Where the processor has AVX2 (nearly every x86-64 server of the last ten years), eight
//! places are tested at once: their four-byte pieces are shuffled out of one load, hashed by
//! two vector multiplications, and their filter words (and short-literal words) gathered in
//! one instruction each; the places the filters let through are then handled one by one, as
//! without AVX2. Both ways test the same filters, so they find the same literals.

use std::collections::HashMap;

/// A literal of four bytes or more, by its anchor.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    gram: u32,
    literal: u32,
    /// Where the anchor starts in the literal.
    offset: u32,
    /// The literal's length, and its first and last four bytes: compared with the text before
    /// the whole literal is, which rules out most places where only the anchor occurs.
    len: u32,
    head: u32,
    tail: u32,
}

/// A literal of one to three bytes, by its first two bytes (a one-byte literal by its byte).
#[derive(Clone, Copy, Debug)]
struct Short {
    key: u16,
    literal: u32,
}

/// The literals of a large set, indexed for [`GramSet::find`].
pub(crate) struct GramSet {
    literals: Box<[Box<[u8]>]>,
    /// Empty literals, which occur in every text.
    empty: Box<[u32]>,
    /// Sorted by gram (a literal's anchor, as a little-endian `u32`).
    anchors: Box<[Anchor]>,
    /// Each gram of `anchors` and where its run there starts, in a hash table (open
    /// addressing, at least half free; free slots start at [`FREE`]).
    runs: Box<[(u32, u32)]>,
    /// For every anchor's gram, two bits of one word, as [`probe`] picks them (a blocked
    /// Bloom filter): one load rules out most places in a text. `1 << word_bits` words.
    bloom: Box<[u32]>,
    word_bits: u32,
    /// Literals of two or three bytes, sorted by their first two bytes, and those two bytes
    /// (as a little-endian `u16`) as a bit set.
    shorts: Box<[Short]>,
    short_keys: Box<[u32; SHORT_WORDS]>,
    /// Literals of one byte, sorted by it, and their bytes as a bit set.
    singles: Box<[Short]>,
    single_keys: [u32; 8],
    /// Whether [`GramSet::find`] may test eight places at once (the processor has AVX2).
    vector: bool,
}

/// Words of [`GramSet::short_keys`]: a bit for every two bytes.
const SHORT_WORDS: usize = (1 << 16) / 32;

const ANCHOR: usize = 4;

/// Fibonacci hashing's multiplier.
const HASH: u64 = 0x9E37_79B9_7F4A_7C15;

impl GramSet {
    /// Indexes `literals` (searched as given: the caller lowercases both sides).
    pub(crate) fn new<'a>(literals: impl IntoIterator<Item = &'a [u8]>) -> GramSet {
        let literals: Box<[Box<[u8]>]> = literals.into_iter().map(Box::from).collect();
        let mut anchors = Vec::new();
        let mut shorts = Vec::new();
        let mut singles = Vec::new();
        let mut empty = Vec::new();
        // How many literals hold each piece: a piece many literals share (`get-`, `.exe`,
        // `powe`) is common in the texts searched too, so each literal is anchored by the piece
        // fewest others hold, and among those by the rarest bytes.
        let pieces: usize = literals.iter().map(|l| l.len().saturating_sub(ANCHOR - 1)).sum();
        let mut shared: HashMap<u32, u32, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(pieces, foldhash::fast::RandomState::default());
        let mut grams: Vec<u32> = Vec::new();
        for l in literals.iter().filter(|l| l.len() >= ANCHOR) {
            grams.clear();
            grams.extend(l.windows(ANCHOR).map(gram));
            grams.sort_unstable();
            grams.dedup();
            for &g in &grams {
                *shared.entry(g).or_default() += 1;
            }
        }
        for (i, l) in literals.iter().enumerate() {
            let literal = i as u32;
            match l.len() {
                0 => empty.push(literal),
                1 => singles.push(Short { key: u16::from(l[0]), literal }),
                2 | 3 => shorts.push(Short { key: u16::from_le_bytes([l[0], l[1]]), literal }),
                _ => {
                    let offset = (0..=l.len() - ANCHOR)
                        .min_by_key(|&o| {
                            let piece = &l[o..o + ANCHOR];
                            let holders = shared.get(&gram(piece)).copied().unwrap_or(0);
                            (holders, piece.iter().map(|&b| commonness(b)).sum::<u32>())
                        })
                        .unwrap_or(0);
                    anchors.push(Anchor {
                        gram: gram(&l[offset..offset + ANCHOR]),
                        literal,
                        offset: offset as u32,
                        len: l.len() as u32,
                        head: gram(l),
                        tail: gram(&l[l.len() - ANCHOR..]),
                    });
                }
            }
        }
        anchors.sort_unstable_by_key(|a| (a.gram, a.literal));
        shorts.sort_unstable_by_key(|s| (s.key, s.literal));
        singles.sort_unstable_by_key(|s| (s.key, s.literal));
        let size = (anchors.len() * 2).next_power_of_two().max(8);
        let mut runs = vec![(0, FREE); size];
        for (i, a) in anchors.iter().enumerate() {
            if i > 0 && anchors[i - 1].gram == a.gram {
                continue;
            }
            let mut at = run_slot(a.gram, size);
            while runs[at].1 != FREE {
                at = (at + 1) & (size - 1);
            }
            runs[at] = (a.gram, i as u32);
        }
        // Some 64 bits per anchor, two set per anchor in one 32-bit word: a text's four bytes
        // are taken for an anchor's by mistake about once in 300 places. Between 2 Kbit and
        // 512 Kbit.
        let words = (anchors.len() * 64 / 32).next_power_of_two().clamp(1 << 6, 1 << 14);
        let word_bits = words.trailing_zeros();
        let mut bloom = vec![0u32; words];
        for a in &anchors {
            let (word, mask) = probe(a.gram, word_bits);
            if let Some(w) = bloom.get_mut(word) {
                *w |= mask;
            }
        }
        let mut short_keys = Box::new([0u32; SHORT_WORDS]);
        for s in &shorts {
            set(&mut short_keys[..], usize::from(s.key));
        }
        let mut single_keys = [0u32; 8];
        for s in &singles {
            set(&mut single_keys, usize::from(s.key));
        }
        GramSet {
            literals,
            empty: empty.into(),
            anchors: anchors.into(),
            runs: runs.into(),
            bloom: bloom.into(),
            word_bits,
            shorts: shorts.into(),
            short_keys,
            singles: singles.into(),
            single_keys,
            vector: vector::available(),
        }
    }

    /// Calls `found` with the index of every literal that occurs in `text` (as often as it is
    /// found: once per occurrence, in no particular order).
    pub(crate) fn find(&self, text: &[u8], found: &mut impl FnMut(usize)) {
        for &i in self.empty.iter() {
            found(i as usize);
        }
        let from = self.find_vector(text, found);
        self.find_from(text, from, found);
    }

    /// [`GramSet::find`]'s places from `from` on, one by one.
    fn find_from(&self, text: &[u8], from: usize, found: &mut impl FnMut(usize)) {
        let (singles, shorts) = (!self.singles.is_empty(), !self.shorts.is_empty());
        let (bloom, word_bits) = (&self.bloom[..], self.word_bits);
        let ends = text.len().saturating_sub(ANCHOR - 1);
        for at in from..ends {
            let Some(&[a, b, c, d]) = text.get(at..at + ANCHOR) else { break };
            let g = u32::from_le_bytes([a, b, c, d]);
            if singles && is_set(&self.single_keys, usize::from(a)) {
                self.find_single(a, found);
            }
            if shorts && is_set(&self.short_keys[..], (g & 0xFFFF) as usize) {
                self.find_short(text, at, (g & 0xFFFF) as u16, found);
            }
            let (word, mask) = probe(g, word_bits);
            if bloom.get(word).is_some_and(|w| w & mask == mask) {
                self.find_long(text, at, g, found);
            }
        }
        // The last positions, where no anchor fits.
        for at in ends.max(from)..text.len() {
            let Some(&a) = text.get(at) else { break };
            if singles && is_set(&self.single_keys, usize::from(a)) {
                self.find_single(a, found);
            }
            if let Some(&b) = text.get(at + 1) {
                let key = u16::from_le_bytes([a, b]);
                if shorts && is_set(&self.short_keys[..], usize::from(key)) {
                    self.find_short(text, at, key, found);
                }
            }
        }
    }

    /// [`GramSet::find`]'s places eight at a time, as far as sixteen bytes can be read from
    /// each eighth place; returns where the places left to test one by one start.
    fn find_vector(&self, text: &[u8], found: &mut impl FnMut(usize)) -> usize {
        vector::candidates(self, text, &mut |place, what| {
            let Some(&[a, b, c, d]) = text.get(place..place + ANCHOR) else { return };
            let g = u32::from_le_bytes([a, b, c, d]);
            if what & vector::SINGLE != 0 {
                self.find_single(a, found);
            }
            if what & vector::SHORT != 0 {
                self.find_short(text, place, (g & 0xFFFF) as u16, found);
            }
            if what & vector::LONG != 0 {
                self.find_long(text, place, g, found);
            }
        })
    }

    /// The literals with this anchor that occur with it at `at`.
    #[inline(never)]
    fn find_long(&self, text: &[u8], at: usize, g: u32, found: &mut impl FnMut(usize)) {
        let mask = self.runs.len() - 1;
        let mut slot = run_slot(g, self.runs.len());
        let from = loop {
            match self.runs.get(slot) {
                Some(&(gram, start)) if start != FREE => {
                    if gram == g {
                        break start as usize;
                    }
                    slot = (slot + 1) & mask;
                }
                _ => return,
            }
        };
        let Some(run) = self.anchors.get(from..) else { return };
        for a in run.iter().take_while(|a| a.gram == g) {
            let Some(start) = at.checked_sub(a.offset as usize) else { continue };
            let end = start + a.len as usize;
            let (Some(head), Some(tail)) = (text.get(start..start + ANCHOR), text.get(end - ANCHOR..end)) else {
                continue;
            };
            if gram(head) != a.head || gram(tail) != a.tail {
                continue;
            }
            let Some(literal) = self.literals.get(a.literal as usize) else { continue };
            if text.get(start..end) == Some(&literal[..]) {
                found(a.literal as usize);
            }
        }
    }

    /// The literals of one byte that are `byte`.
    #[inline(never)]
    fn find_single(&self, byte: u8, found: &mut impl FnMut(usize)) {
        let key = u16::from(byte);
        let from = self.singles.partition_point(|s| s.key < key);
        for s in self.singles[from..].iter().take_while(|s| s.key == key) {
            found(s.literal as usize);
        }
    }

    /// The literals of two or three bytes that start at `at` with the two bytes `key`.
    #[inline(never)]
    fn find_short(&self, text: &[u8], at: usize, key: u16, found: &mut impl FnMut(usize)) {
        let from = self.shorts.partition_point(|s| s.key < key);
        for s in self.shorts[from..].iter().take_while(|s| s.key == key) {
            let Some(literal) = self.literals.get(s.literal as usize) else { continue };
            if text.get(at..at + literal.len()) == Some(&literal[..]) {
                found(s.literal as usize);
            }
        }
    }
}

fn gram(bytes: &[u8]) -> u32 {
    let mut w = [0u8; ANCHOR];
    w.copy_from_slice(&bytes[..ANCHOR]);
    u32::from_le_bytes(w)
}

/// A free slot of [`GramSet::runs`].
const FREE: u32 = u32::MAX;

/// Where a gram's probe in [`GramSet::runs`] (of `size` slots, a power of two) starts.
fn run_slot(gram: u32, size: usize) -> usize {
    (u64::from(gram).wrapping_mul(HASH) >> 32) as usize & (size - 1)
}

/// Multipliers of [`probe`]'s two hashes (odd, of mixed bits): 32-bit products, which eight
/// lanes of a vector compute at once.
const WORD_HASH: u32 = 0x9E37_79B1;
const BIT_HASH: u32 = 0x85EB_CA77;

/// The word of the Bloom filter (of `1 << word_bits` words, `word_bits` from 1 to 31) for a
/// gram, and its two bits in it: from the high bits of two products, which depend on every
/// bit of the gram.
#[inline(always)]
fn probe(gram: u32, word_bits: u32) -> (usize, u32) {
    let word = (gram.wrapping_mul(WORD_HASH) >> (32 - word_bits)) as usize;
    let x = gram.wrapping_mul(BIT_HASH);
    (word, (1 << (x >> 27)) | (1 << ((x >> 22) & 31)))
}

fn set(bits: &mut [u32], i: usize) {
    if let Some(w) = bits.get_mut(i / 32) {
        *w |= 1 << (i % 32);
    }
}

#[inline(always)]
fn is_set(bits: &[u32], i: usize) -> bool {
    bits.get(i / 32).is_some_and(|w| w & (1 << (i % 32)) != 0)
}

/// Eight places at a time, with AVX2.
///
/// The crate's only unsafe code, allowed here alone: calling a function compiled for AVX2
/// (after the processor was found to have it), one unaligned 16-byte load from a slice of 16
/// bytes, and two gathers whose indices the hashes keep below the tables' lengths. The tests
/// check this path against a naive search and against the one-by-one path.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod vector {
    use super::GramSet;
    use std::arch::x86_64::*;

    /// Bytes read from each eighth place: one 16-byte load holds the eight places' pieces.
    const BLOCK: usize = 16;
    /// Places tested at once.
    const STEP: usize = 8;
    /// What a place lets through: a literal of one byte, of two or three, or an anchor.
    pub(super) const SINGLE: u8 = 1;
    pub(super) const SHORT: u8 = 2;
    pub(super) const LONG: u8 = 4;

    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx2")
    }

    /// Tests the places of `text` from its start, eight at a time, while the sixteen bytes
    /// from the first of the eight lie in `text`; calls `hit` with each place some filter lets
    /// through and what let it through. Returns the first place not tested.
    pub(super) fn candidates(set: &GramSet, text: &[u8], hit: &mut impl FnMut(usize, u8)) -> usize {
        if !set.vector {
            return 0;
        }
        // SAFETY: `set.vector` is true only where the processor has AVX2.
        unsafe { candidates_avx2(set, text, hit) }
    }

    #[target_feature(enable = "avx2")]
    fn candidates_avx2(set: &GramSet, text: &[u8], hit: &mut impl FnMut(usize, u8)) -> usize {
        // Lane i (of eight) takes bytes i..i + 4 of the sixteen loaded: the low half of the
        // vector holds places 0..4, the high half (a copy of the same sixteen bytes) 4..8.
        let pieces = _mm256_setr_epi8(
            0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6, //
            4, 5, 6, 7, 5, 6, 7, 8, 6, 7, 8, 9, 7, 8, 9, 10,
        );
        let word_hash = _mm256_set1_epi32(super::WORD_HASH as i32);
        let bit_hash = _mm256_set1_epi32(super::BIT_HASH as i32);
        let word_shift = _mm_cvtsi32_si128((32 - set.word_bits) as i32);
        let one = _mm256_set1_epi32(1);
        let five_bits = _mm256_set1_epi32(31);
        let low_half = _mm256_set1_epi32(0xFFFF);
        let (shorts, singles) = (!set.shorts.is_empty(), !set.singles.is_empty());
        let bloom = set.bloom.as_ptr().cast::<i32>();
        let short_keys = set.short_keys.as_ptr().cast::<i32>();
        let mut at = 0;
        while at + BLOCK <= text.len() {
            let Some(block) = text.get(at..at + BLOCK) else { break };
            // SAFETY: `block` is sixteen readable bytes; an unaligned load.
            let bytes = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
            let grams = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(bytes), pieces);
            // The filter's words and bits, as `probe` computes them one at a time.
            let words = _mm256_srl_epi32(_mm256_mullo_epi32(grams, word_hash), word_shift);
            let x = _mm256_mullo_epi32(grams, bit_hash);
            let bits = _mm256_or_si256(
                _mm256_sllv_epi32(one, _mm256_srli_epi32::<27>(x)),
                _mm256_sllv_epi32(one, _mm256_and_si256(_mm256_srli_epi32::<22>(x), five_bits)),
            );
            // SAFETY: every lane of `words` is below `1 << word_bits`, the filter's length.
            let filter = unsafe { _mm256_i32gather_epi32::<4>(bloom, words) };
            let long = _mm256_cmpeq_epi32(_mm256_and_si256(filter, bits), bits);
            let long = _mm256_movemask_ps(_mm256_castsi256_ps(long)) as u32;
            let mut short = 0;
            if shorts {
                let keys = _mm256_and_si256(grams, low_half);
                // SAFETY: every lane of `keys >> 5` is below 2048, the short keys' length.
                let key_words = unsafe { _mm256_i32gather_epi32::<4>(short_keys, _mm256_srli_epi32::<5>(keys)) };
                let key_bits = _mm256_sllv_epi32(one, _mm256_and_si256(keys, five_bits));
                let met = _mm256_cmpeq_epi32(_mm256_and_si256(key_words, key_bits), key_bits);
                short = _mm256_movemask_ps(_mm256_castsi256_ps(met)) as u32;
            }
            let mut single = 0;
            if singles {
                for (i, &b) in block[..STEP].iter().enumerate() {
                    if super::is_set(&set.single_keys, usize::from(b)) {
                        single |= 1 << i;
                    }
                }
            }
            let mut any = long | short | single;
            while any != 0 {
                let i = any.trailing_zeros();
                any &= any - 1;
                let bit = |mask: u32, what: u8| if mask >> i & 1 != 0 { what } else { 0 };
                hit(at + i as usize, bit(single, SINGLE) | bit(short, SHORT) | bit(long, LONG));
            }
            at += STEP;
        }
        at
    }
}

/// Without AVX2 (other processors), every place is tested one by one.
#[cfg(not(target_arch = "x86_64"))]
mod vector {
    use super::GramSet;
    pub(super) const SINGLE: u8 = 1;
    pub(super) const SHORT: u8 = 2;
    pub(super) const LONG: u8 = 4;
    pub(super) fn available() -> bool {
        false
    }
    pub(super) fn candidates(_: &GramSet, _: &[u8], _: &mut impl FnMut(usize, u8)) -> usize {
        0
    }
}

/// How common a byte is in lowercased scripts, command lines, paths and messages: a rough
/// ranking, higher for commoner bytes, by which each literal's rarest four bytes are chosen.
fn commonness(b: u8) -> u32 {
    match b {
        b' ' | b'e' => 100,
        b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' => 90,
        b'h' | b'l' | b'd' | b'c' | b'u' | b'm' | b'\\' => 75,
        b'p' | b'f' | b'g' | b'w' | b'y' | b'b' | b'v' | b'k' | b'.' | b'-' | b'/' | b'"' | b'$' => 60,
        b'\'' | b'(' | b')' | b'=' | b',' | b':' | b';' | b'_' | b'\n' | b'\r' | b'\t' | b'0'..=b'9' => 45,
        b'x' | b'j' | b'q' | b'z' => 35,
        0x80.. => 10,
        _ => 25,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every literal of `literals` found in `text`, as a naive search finds them.
    fn naive(literals: &[Vec<u8>], text: &[u8]) -> Vec<usize> {
        (0..literals.len())
            .filter(|&i| literals[i].is_empty() || text.windows(literals[i].len()).any(|w| w == &literals[i][..]))
            .collect()
    }

    fn found(set: &GramSet, text: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        set.find(text, &mut |i| out.push(i));
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn finds_literals_of_every_length_wherever_they_are() {
        let literals: Vec<Vec<u8>> = ["a", "-e", "cmd", "iex ", "invoke-mimikatz", "mimi", "kat", "z", "", "\\\\"]
            .iter()
            .map(|l| l.as_bytes().to_vec())
            .collect();
        let set = GramSet::new(literals.iter().map(|l| &l[..]));
        for text in [
            "",
            "a",
            "z",
            "za",
            "-e",
            "x-e",
            "cmd",
            "xxcmd",
            "iex",
            "iex ",
            "powershell -e invoke-mimikatz",
            "invoke-mimikat",
            "nvoke-mimikatz",
            "\\\\host\\share",
            "no match here",
        ] {
            assert_eq!(found(&set, text.as_bytes()), naive(&literals, text.as_bytes()), "{text:?}");
            // Within longer texts, at every offset of the eight places tested at once.
            for before in 0..20 {
                let long = format!("{}{text}{}", "y".repeat(before), "y".repeat(24));
                assert_eq!(found(&set, long.as_bytes()), naive(&literals, long.as_bytes()), "{long:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Literals and texts over a small alphabet, so that literals overlap, share anchors
        /// and occur often: the set finds exactly what a naive search finds, testing eight
        /// places at once (where the processor can) and one by one.
        #[test]
        fn finds_what_a_naive_search_finds(
            literals in prop::collection::vec(prop::collection::vec(prop::sample::select(b"abc -\\\xc3\xa9".to_vec()), 0..9), 1..40),
            texts in prop::collection::vec(prop::collection::vec(prop::sample::select(b"abc -\\\xc3\xa9x".to_vec()), 0..120), 1..8),
        ) {
            let mut set = GramSet::new(literals.iter().map(|l| &l[..]));
            for text in &texts {
                prop_assert_eq!(found(&set, text), naive(&literals, text));
            }
            set.vector = false;
            for text in &texts {
                prop_assert_eq!(found(&set, text), naive(&literals, text));
            }
        }
    }
}
