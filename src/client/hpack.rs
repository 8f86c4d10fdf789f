//! HPACK (RFC 7541), the header compression of HTTP/2, for gapless's own HTTP/2 client: a
//! [`Decoder`] (one per connection, with its dynamic table) for the response heads, and
//! [`encode_request`] for the request head, encoded once per run.
//!
//! The decoder is on the hot path (one response head per request), so it allocates nothing per
//! field or per block once warm:
//!
//! - The dynamic table keeps the names and values of its entries back to back in one byte buffer,
//!   oldest first, plus a ring of `(offset, name length, value length)` descriptors. Eviction only
//!   moves the start of the live bytes; new entries are appended at the end, and when the end
//!   would pass the buffer's capacity (twice the table's limit, reserved at the first insertion)
//!   the live bytes, at most one table's worth, are moved to the front. Every entry is one
//!   contiguous slice, and the copying is amortised to at most one byte moved per byte inserted.
//! - Huffman-coded strings are decoded into a scratch buffer owned by the decoder, four bits at a
//!   time by a 257-state × 16 transition table (the 256 internal nodes of the code tree are the
//!   states, as in nghttp2, plus a dead state after EOS, so that the loop has no branch), built at
//!   first use from the 257 codes of RFC 7541 Appendix B. On the nginx-like response head of the
//!   tests (8 fields, 7 of them Huffman-coded literals with incremental indexing, 93 bytes) a
//!   decode takes about 0.75 µs in a release build on the 2-core VM, two thirds of it in Huffman
//!   decoding (about 3 ns per four bits: the latency of one dependent table load).
//!
//! The encoder never touches a dynamic table (the same block is sent on every stream of every
//! connection), and uses no Huffman coding: each field is indexed when the static table holds it,
//! else a literal without indexing, naming the static table's entry when it has the name.

use std::collections::VecDeque;
use std::sync::OnceLock;

/// Errors decoding a header block (each a COMPRESSION_ERROR of the connection, RFC 9113 §4.3).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// An integer does not fit in 32 bits, or takes more than the five continuation bytes that
    /// 32 bits need.
    #[error("HPACK integer overflows 32 bits")]
    IntegerOverflow,
    /// The block ends inside a field representation (in an integer, or before a string).
    #[error("HPACK header block truncated inside a field representation")]
    Truncated,
    /// Index 0, which names no entry (RFC 7541 §6.1).
    #[error("HPACK index 0")]
    IndexZero,
    /// An index past the static table and the dynamic table.
    #[error("HPACK index {index} past the static table and the {dynamic} dynamic table entries")]
    IndexOutOfRange {
        /// The index received.
        index: u32,
        /// How many entries the dynamic table held.
        dynamic: u32,
    },
    /// A Huffman-coded string contains the EOS symbol (RFC 7541 §5.2).
    #[error("HPACK Huffman-coded string contains the EOS symbol")]
    HuffmanEos,
    /// A Huffman-coded string ends with more than 7 bits of padding (RFC 7541 §5.2).
    #[error("HPACK Huffman-coded string padded with more than 7 bits")]
    HuffmanPaddingTooLong,
    /// A Huffman-coded string ends with bits that are not a prefix of EOS (all ones), i.e. a
    /// symbol cut short (RFC 7541 §5.2).
    #[error("HPACK Huffman-coded string padded with bits that are not all ones")]
    HuffmanPaddingNotOnes,
    /// A dynamic table size update above the size we advertised (RFC 7541 §6.3).
    #[error("HPACK dynamic table size update to {size} bytes, above our limit of {max}")]
    SizeUpdateTooLarge {
        /// The size asked for.
        size: u32,
        /// The limit we advertised (SETTINGS_HEADER_TABLE_SIZE).
        max: u32,
    },
    /// A dynamic table size update after the first field of the block (RFC 7541 §4.2).
    #[error("HPACK dynamic table size update after a header field")]
    SizeUpdateNotAtStart,
    /// A string literal longer than what is left of the block.
    #[error("HPACK string of {len} bytes, longer than the {left} bytes left in the block")]
    StringPastEnd {
        /// The string's length.
        len: u32,
        /// The bytes left in the block after its length.
        left: u32,
    },
}

/// The static table (RFC 7541 Appendix A); index `i` is `STATIC[i - 1]`.
const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The Huffman code (RFC 7541 Appendix B): `(code, length in bits)` of each byte value, then EOS
/// (symbol 256).
#[rustfmt::skip]
const HUFFMAN_CODES: [(u32, u8); 257] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28),
    (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28), (0xfffffe8, 28), (0xffffea, 24),
    (0x3ffffffc, 30), (0xfffffe9, 28), (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28),
    (0xfffffec, 28), (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28), (0xffffff4, 28),
    (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28),
    (0xffffffa, 28), (0xffffffb, 28), (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11), (0x3fa, 10), (0x3fb, 10), (0xf9, 8),
    (0x7fb, 11), (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6), (0x0, 5), (0x1, 5), (0x2, 5),
    (0x19, 6), (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6), (0x1e, 6), (0x1f, 6), (0x5c, 7),
    (0xfb, 8), (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10), (0x1ffa, 13), (0x21, 6),
    (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7), (0x63, 7), (0x64, 7),
    (0x65, 7), (0x66, 7), (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7), (0x6b, 7), (0x6c, 7),
    (0x6d, 7), (0x6e, 7), (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7), (0xfc, 8), (0x73, 7),
    (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6), (0x7ffd, 15),
    (0x3, 5), (0x23, 6), (0x4, 5), (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6), (0x27, 6), (0x6, 5),
    (0x74, 7), (0x75, 7), (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5), (0x2b, 6), (0x76, 7),
    (0x2c, 6), (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7), (0x79, 7), (0x7a, 7), (0x7b, 7),
    (0x7ffe, 15), (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28), (0xfffe6, 20),
    (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20), (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22),
    (0x7fffd9, 23), (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23), (0x7fffdd, 23),
    (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23), (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22),
    (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23), (0x7fffe4, 23),
    (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23), (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23),
    (0xffffef, 24), (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22), (0x3fffdc, 22),
    (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21), (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22),
    (0xfffff0, 24), (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23), (0x1fffe0, 21),
    (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21), (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23),
    (0x7fffef, 23), (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22), (0x7ffff0, 23),
    (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23), (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20),
    (0x7fff1, 19), (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25), (0x3ffffe2, 26),
    (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27), (0x7ffffdf, 27), (0x3ffffe5, 26),
    (0xfffff1, 24), (0x1ffffed, 25), (0x7fff2, 19), (0x1fffe3, 21), (0x3ffffe6, 26),
    (0x7ffffe0, 27), (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26), (0xffffffd, 28),
    (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27), (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20),
    (0x1fffe6, 21), (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23), (0x3fffea, 22),
    (0x3fffeb, 22), (0x1ffffee, 25), (0x1ffffef, 25), (0xfffff4, 24), (0xfffff5, 24),
    (0x3ffffea, 26), (0x7ffff4, 23), (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26),
    (0x3ffffed, 26), (0x7ffffe7, 27), (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27),
    (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27), (0x7ffffee, 27),
    (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26), (0x3fffffff, 30),
];

/// The symbol number of EOS in [`HUFFMAN_CODES`].
const EOS: u16 = 256;

/// The size an entry counts for beyond its name and value (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// The decoding side of one HTTP/2 connection: its dynamic table.
pub struct Decoder {
    /// The dynamic table.
    table: Table,
    /// The Huffman-decoded name and value of the field being decoded; reused for every field.
    scratch: Vec<u8>,
    /// Huffman-coded strings decoded lately.
    recent: Recent,
}

/// Most Huffman-coded strings remembered with their decoding ([`Recent`]).
const RECENT: usize = 8;

/// The longest Huffman-coded string remembered.
const RECENT_LEN: usize = 64;

/// The last few short Huffman-coded strings and what they decode to. A server sends most of
/// its response header values byte for byte the same in every response (nginx: `server`,
/// `content-type`, `content-length`, a `date` for a whole second), and Huffman decoding was two
/// thirds of the decoder's time: a string met again is copied instead (BENCHMARKS.md, issue 19).
/// Decoding is a function of the coded bytes alone, so a remembered string is always right;
/// only strings that decoded without error are remembered. At most [`RECENT`] ×
/// ([`RECENT_LEN`] + its decoding) bytes, reused.
#[derive(Default)]
struct Recent {
    memos: [(Vec<u8>, Vec<u8>); RECENT],
    next: usize,
}

impl Recent {
    /// Decodes `coded` onto the end of `out`, from memory if it was met lately.
    fn huffman_decode(&mut self, coded: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if coded.len() > RECENT_LEN {
            return huffman_decode(coded, out);
        }
        if let Some((_, plain)) = self.memos.iter().find(|(c, _)| c.as_slice() == coded) {
            out.extend_from_slice(plain);
            return Ok(());
        }
        let from = out.len();
        huffman_decode(coded, out)?;
        let (c, plain) = &mut self.memos[self.next];
        c.clear();
        c.extend_from_slice(coded);
        plain.clear();
        plain.extend_from_slice(&out[from..]);
        self.next = (self.next + 1) % RECENT;
        Ok(())
    }
}

impl Decoder {
    /// A decoder whose dynamic table holds at most `max_size` bytes (the SETTINGS_HEADER_TABLE_SIZE we
    /// advertise; 4096 by default).
    pub fn new(max_size: usize) -> Decoder {
        Decoder {
            table: Table::new(max_size),
            scratch: Vec::new(),
            recent: Recent::default(),
        }
    }

    /// Decodes one complete header block (HEADERS + CONTINUATION payloads joined), calling `field(name,
    /// value)` for each field in order; the slices are only valid during the call. Fields are decoded
    /// whole even after an error in the caller's eyes: the dynamic table must stay in step with the peer.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), Error> {
        let mut pos = 0;
        let mut at_start = true;
        while let Some(&first) = block.get(pos) {
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = integer(block, &mut pos, 7)?;
                let (name, value) = self.table.get(index)?;
                field(name, value);
            } else if first & 0x40 != 0 {
                // Literal with incremental indexing (§6.2.1).
                self.scratch.clear();
                let name = self.name(block, &mut pos, 6)?;
                let value = string(block, &mut pos, &mut self.scratch, &mut self.recent)?;
                self.table
                    .insert(name, value, block, &self.scratch, &mut field);
            } else if first & 0x20 != 0 {
                // Dynamic table size update (§6.3).
                if !at_start {
                    return Err(Error::SizeUpdateNotAtStart);
                }
                let size = integer(block, &mut pos, 5)?;
                if size as usize > self.table.limit {
                    return Err(Error::SizeUpdateTooLarge {
                        size,
                        max: u32::try_from(self.table.limit).unwrap_or(u32::MAX),
                    });
                }
                self.table.resize(size as usize);
                continue;
            } else {
                // Literal without indexing (§6.2.2) or never indexed (§6.2.3): the same to a
                // decoder that re-encodes nothing.
                self.scratch.clear();
                let name = self.name(block, &mut pos, 4)?;
                let value = string(block, &mut pos, &mut self.scratch, &mut self.recent)?;
                let name = self.table.name(name, block, &self.scratch);
                field(name, value.bytes(block, &self.scratch));
            }
            at_start = false;
        }
        Ok(())
    }

    /// Reads the name of a literal field whose index has a `prefix`-bit prefix: an index into the
    /// tables (checked), or a string literal after index 0.
    fn name(&mut self, block: &[u8], pos: &mut usize, prefix: u8) -> Result<Name, Error> {
        match integer(block, pos, prefix)? {
            0 => Ok(Name::Literal(string(
                block,
                pos,
                &mut self.scratch,
                &mut self.recent,
            )?)),
            index => {
                self.table.get(index)?;
                Ok(Name::Index(index as usize))
            }
        }
    }

    /// The dynamic table's size by RFC 7541 §4.1.
    #[cfg(test)]
    fn table_size(&self) -> usize {
        self.table.size
    }

    /// The dynamic table's entries, newest first.
    #[cfg(test)]
    fn table_entries(&self) -> Vec<(String, String)> {
        (0..self.table.entries.len())
            .map(|i| {
                let (n, v) = self.table.entry(i);
                (text(n), text(v))
            })
            .collect()
    }
}

/// Where a string of the block being decoded is: a range of the block (a raw literal) or of the
/// decoder's scratch buffer (a Huffman-coded one, decoded).
#[derive(Clone, Copy)]
enum Str {
    /// `block[start..end]`.
    Block(usize, usize),
    /// `scratch[start..end]`.
    Scratch(usize, usize),
}

impl Str {
    /// The string's bytes.
    fn bytes<'a>(self, block: &'a [u8], scratch: &'a [u8]) -> &'a [u8] {
        match self {
            Str::Block(start, end) => &block[start..end],
            Str::Scratch(start, end) => &scratch[start..end],
        }
    }

    /// The string's length.
    fn len(self) -> usize {
        match self {
            Str::Block(start, end) | Str::Scratch(start, end) => end - start,
        }
    }
}

/// The name of a literal field.
#[derive(Clone, Copy)]
enum Name {
    /// The name of the entry at this index (valid) of the static or dynamic table.
    Index(usize),
    /// A string literal.
    Literal(Str),
}

/// One entry of the dynamic table: where its name and value are in [`Table::bytes`].
#[derive(Clone, Copy)]
struct Entry {
    /// The logical offset of its name (see [`Table::base`]); the value follows the name.
    at: usize,
    /// The name's length.
    name: usize,
    /// The value's length.
    value: usize,
}

/// The dynamic table (RFC 7541 §2.3.2, §4).
struct Table {
    /// The names and values of the entries back to back, oldest first, from `head` to the end;
    /// the bytes before `head` belong to evicted entries. Its capacity is reserved once.
    bytes: Vec<u8>,
    /// Where the oldest entry starts in `bytes`.
    head: usize,
    /// The logical offset of `bytes[0]`: entries keep logical offsets (wrapping), so moving the
    /// live bytes to the front changes no entry.
    base: usize,
    /// The entries, newest first (index 62 is `entries[0]`).
    entries: VecDeque<Entry>,
    /// The table's size: the sum of its entries' sizes, 32 bytes each over name and value.
    size: usize,
    /// The maximum size, as last set by the encoder (at most `limit`).
    max: usize,
    /// The limit we advertised: the maximum size the encoder may set.
    limit: usize,
}

impl Table {
    /// An empty table whose encoder may use up to `limit` bytes.
    fn new(limit: usize) -> Table {
        Table {
            bytes: Vec::new(),
            head: 0,
            base: 0,
            entries: VecDeque::new(),
            size: 0,
            max: limit,
            limit,
        }
    }

    /// The name and value of the static or dynamic entry at `index`.
    #[inline]
    fn get(&self, index: u32) -> Result<(&[u8], &[u8]), Error> {
        let index = index as usize;
        match index {
            0 => Err(Error::IndexZero),
            1..=61 => Ok(STATIC[index - 1]),
            _ if index - 62 < self.entries.len() => Ok(self.entry(index - 62)),
            _ => Err(Error::IndexOutOfRange {
                index: index as u32,
                dynamic: self.entries.len() as u32,
            }),
        }
    }

    /// The name and value of the `i`-th dynamic entry, newest first (valid).
    #[inline]
    fn entry(&self, i: usize) -> (&[u8], &[u8]) {
        let e = self.entries[i];
        let start = e.at.wrapping_sub(self.base);
        let (name, value) = self.bytes[start..start + e.name + e.value].split_at(e.name);
        (name, value)
    }

    /// The bytes of a literal field's name.
    #[inline]
    fn name<'a>(&'a self, name: Name, block: &'a [u8], scratch: &'a [u8]) -> &'a [u8] {
        match name {
            Name::Index(index) if index <= 61 => STATIC[index - 1].0,
            Name::Index(index) => self.entry(index - 62).0,
            Name::Literal(s) => s.bytes(block, scratch),
        }
    }

    /// The length of a literal field's name.
    #[inline]
    fn name_len(&self, name: Name) -> usize {
        match name {
            Name::Index(index) if index <= 61 => STATIC[index - 1].0.len(),
            Name::Index(index) => self.entries[index - 62].name,
            Name::Literal(s) => s.len(),
        }
    }

    /// Adds the field of a literal with incremental indexing (RFC 7541 §4.4) and passes it to
    /// `field`. The new entry may name an entry that its own insertion evicts: its bytes are
    /// copied before anything is evicted.
    fn insert(
        &mut self,
        name: Name,
        value: Str,
        block: &[u8],
        scratch: &[u8],
        field: &mut impl FnMut(&[u8], &[u8]),
    ) {
        let name_len = self.name_len(name);
        let len = name_len + value.len();
        if len + ENTRY_OVERHEAD > self.max {
            // Too large for the table: it empties the table and is not added (§4.4).
            field(self.name(name, block, scratch), value.bytes(block, scratch));
            self.evict_to(0);
            return;
        }
        // Room at the end of `bytes`, by moving the live bytes (at most `max` bytes, all of
        // them still live, including any entry the new one names) to the front. The capacity,
        // twice the limit, then holds them and the new entry: no reallocation.
        let capacity = 2 * self.limit;
        if self.bytes.capacity() < capacity {
            self.bytes.reserve_exact(capacity - self.bytes.len());
        }
        if self.bytes.len() + len > capacity {
            self.bytes.drain(..self.head);
            self.base = self.base.wrapping_add(self.head);
            self.head = 0;
        }
        let at = self.base.wrapping_add(self.bytes.len());
        match name {
            Name::Index(index) if index <= 61 => self.bytes.extend_from_slice(STATIC[index - 1].0),
            Name::Index(index) => {
                let e = self.entries[index - 62];
                let start = e.at.wrapping_sub(self.base);
                self.bytes.extend_from_within(start..start + e.name);
            }
            Name::Literal(s) => self.bytes.extend_from_slice(s.bytes(block, scratch)),
        }
        self.bytes.extend_from_slice(value.bytes(block, scratch));
        debug_assert!(self.bytes.len() <= capacity);
        self.entries.push_front(Entry {
            at,
            name: name_len,
            value: value.len(),
        });
        self.size += len + ENTRY_OVERHEAD;
        self.evict_to(self.max);
        let (name, value) = self.entry(0);
        field(name, value);
    }

    /// A dynamic table size update (§4.3): evicts down to the new maximum.
    fn resize(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    /// Evicts the oldest entries until the table's size is at most `max`.
    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            let Some(e) = self.entries.pop_back() else {
                break;
            };
            self.size -= e.name + e.value + ENTRY_OVERHEAD;
            self.head = e.at.wrapping_sub(self.base) + e.name + e.value;
        }
        if self.entries.is_empty() {
            self.base = self.base.wrapping_add(self.bytes.len());
            self.bytes.clear();
            self.head = 0;
        }
    }
}

/// Decodes an integer with a `prefix`-bit prefix (RFC 7541 §5.1) from `block[*pos]`, which
/// exists, and moves `pos` past it. Values past `u32::MAX` are refused, and so is any encoding
/// longer than 32 bits need (five bytes after the prefix), even of a small value padded with
/// zero continuation bytes.
#[inline]
fn integer(block: &[u8], pos: &mut usize, prefix: u8) -> Result<u32, Error> {
    let mask = ((1u16 << prefix) - 1) as u8;
    let first = block[*pos] & mask;
    *pos += 1;
    if first < mask {
        return Ok(u32::from(first));
    }
    let mut value = u64::from(mask);
    let mut shift = 0;
    loop {
        let Some(&byte) = block.get(*pos) else {
            return Err(Error::Truncated);
        };
        *pos += 1;
        value += u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| Error::IntegerOverflow);
        }
        shift += 7;
        if shift > 28 {
            return Err(Error::IntegerOverflow);
        }
    }
}

/// Reads a string literal (RFC 7541 §5.2) from `block[*pos]` and moves `pos` past it; a
/// Huffman-coded one is decoded onto the end of `scratch` (through `recent`).
#[inline]
fn string(
    block: &[u8],
    pos: &mut usize,
    scratch: &mut Vec<u8>,
    recent: &mut Recent,
) -> Result<Str, Error> {
    let Some(&first) = block.get(*pos) else {
        return Err(Error::Truncated);
    };
    let len = integer(block, pos, 7)? as usize;
    let left = block.len() - *pos;
    if len > left {
        return Err(Error::StringPastEnd {
            len: len as u32,
            left: left as u32,
        });
    }
    let start = *pos;
    *pos += len;
    if first & 0x80 == 0 {
        return Ok(Str::Block(start, *pos));
    }
    let from = scratch.len();
    recent.huffman_decode(&block[start..*pos], scratch)?;
    Ok(Str::Scratch(from, scratch.len()))
}

/// The Huffman decoder's states: the 256 internal nodes of the code tree (one fewer than its 257
/// leaves), node 0 the root, each standing for the bits read since the last symbol; and [`DEAD`].
const STATES: usize = 257;
/// The state after EOS: it stays there, and ending in it is [`Error::HuffmanEos`]. Checking for it
/// once at the end instead of at every step keeps the decoding loop free of branches.
const DEAD: u16 = 256;

/// One transition of the Huffman decoder: from a state, on four bits.
#[derive(Clone, Copy, Default)]
struct Step {
    /// The state after the four bits.
    next: u16,
    /// The symbol completed on the way, if `emit` is 1 (at most one: codes are at least 5 bits
    /// long).
    sym: u8,
    /// 1 if the transition completes a symbol, else 0.
    emit: u8,
}

/// What ending a Huffman-coded string in a state means (RFC 7541 §5.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ending {
    /// Nothing left over, or at most 7 bits of a prefix of EOS: a valid end.
    Valid,
    /// More than 7 bits of a prefix of EOS.
    TooLong,
    /// The start of a symbol other than EOS.
    NotOnes,
    /// EOS was decoded ([`DEAD`]).
    Eos,
}

/// The Huffman decoder's tables.
struct Huffman {
    /// `steps[state][four bits]`.
    steps: [[Step; 16]; STATES],
    /// What ending in each state means.
    ending: [Ending; STATES],
}

/// The Huffman decoder's tables, built at first use.
fn huffman() -> &'static Huffman {
    static TABLES: OnceLock<Box<Huffman>> = OnceLock::new();
    TABLES.get_or_init(build_huffman)
}

/// A child in the Huffman code tree being built.
#[derive(Clone, Copy)]
enum Child {
    /// Not yet built.
    Empty,
    /// An internal node.
    Node(u8),
    /// A symbol (256 for EOS).
    Leaf(u16),
}

/// Builds the Huffman decoder's tables from [`HUFFMAN_CODES`].
fn build_huffman() -> Box<Huffman> {
    // The code tree: for each internal node, its two children, its depth, and whether the path
    // to it is all ones.
    let mut tree: Vec<([Child; 2], u8, bool)> = vec![([Child::Empty; 2], 0, true)];
    for (sym, &(code, len)) in (0u16..).zip(HUFFMAN_CODES.iter()) {
        let mut node = 0;
        for i in (0..len).rev() {
            let bit = ((code >> i) & 1) as usize;
            if i == 0 {
                assert!(
                    matches!(tree[node].0[bit], Child::Empty),
                    "not a prefix code"
                );
                tree[node].0[bit] = Child::Leaf(sym);
                break;
            }
            node = match tree[node].0[bit] {
                Child::Node(next) => usize::from(next),
                Child::Empty => {
                    let next = tree.len();
                    let (_, depth, ones) = tree[node];
                    tree.push(([Child::Empty; 2], depth + 1, ones && bit == 1));
                    tree[node].0[bit] = Child::Node(u8::try_from(next).expect("256 nodes"));
                    next
                }
                Child::Leaf(_) => panic!("not a prefix code"),
            };
        }
    }
    assert_eq!(
        tree.len(),
        256,
        "a complete code of 257 symbols has 256 internal nodes"
    );

    let mut tables = Box::new(Huffman {
        steps: [[Step {
            next: DEAD,
            sym: 0,
            emit: 0,
        }; 16]; STATES],
        ending: [Ending::Eos; STATES],
    });
    for (state, &(_, depth, ones)) in tree.iter().enumerate() {
        tables.ending[state] = match (ones, depth) {
            (false, _) => Ending::NotOnes,
            (true, 0..=7) => Ending::Valid,
            (true, _) => Ending::TooLong,
        };
        for nibble in 0..16u8 {
            let mut step = Step::default();
            let mut node = state;
            for i in (0..4).rev() {
                match tree[node].0[usize::from((nibble >> i) & 1)] {
                    Child::Node(next) => node = usize::from(next),
                    Child::Leaf(EOS) => {
                        node = usize::from(DEAD);
                        break;
                    }
                    Child::Leaf(sym) => {
                        assert!(step.emit == 0, "codes are at least 5 bits long");
                        step.emit = 1;
                        step.sym = sym as u8;
                        node = 0;
                    }
                    Child::Empty => unreachable!("the code is complete"),
                }
            }
            step.next = node as u16;
            tables.steps[state][usize::from(nibble)] = step;
        }
    }
    tables
}

/// Decodes a Huffman-coded string (RFC 7541 §5.2) onto the end of `out`.
fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let tables = huffman();
    // At most one symbol per four bits: every step writes its symbol byte, and only those that
    // complete one advance `len`.
    let start = out.len();
    out.resize(start + 2 * src.len(), 0);
    let buf = &mut out[start..];
    let mut len = 0;
    let mut state = 0;
    for &byte in src {
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = tables.steps[state][usize::from(nibble)];
            buf[len] = step.sym;
            len += usize::from(step.emit);
            state = usize::from(step.next);
        }
    }
    out.truncate(start + len);
    match tables.ending[state] {
        Ending::Valid => Ok(()),
        Ending::TooLong => Err(Error::HuffmanPaddingTooLong),
        Ending::NotOnes => Err(Error::HuffmanPaddingNotOnes),
        Ending::Eos => Err(Error::HuffmanEos),
    }
}

/// Encodes a request's header fields once (the same block is sent for every request of a run, so it
/// must not touch any dynamic table): pseudo-headers first as given; each field as an indexed field when
/// (name, value) is in the static table, else a literal *without indexing* with the static table's name
/// index when the name is there, else a literal without indexing with a literal name; no Huffman.
///
/// The fields are encoded in the order given, so the caller puts the pseudo-headers first; names
/// must be lowercase already (RFC 9113 §8.2.1).
pub fn encode_request(fields: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
    for &(name, value) in fields {
        let mut name_index = 0;
        let mut field_index = 0;
        for (index, &(n, v)) in (1..).zip(STATIC.iter()) {
            if n == name {
                if name_index == 0 {
                    name_index = index;
                }
                if v == value {
                    field_index = index;
                    break;
                }
            }
        }
        if field_index != 0 {
            encode_integer(out, 0x80, 7, field_index);
            continue;
        }
        encode_integer(out, 0x00, 4, name_index);
        if name_index == 0 {
            encode_string(out, name);
        }
        encode_string(out, value);
    }
}

/// Appends `value` as an integer with a `prefix`-bit prefix (RFC 7541 §5.1), `flags` in the
/// first byte's other bits.
fn encode_integer(out: &mut Vec<u8>, flags: u8, prefix: u8, value: usize) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a string literal without Huffman coding (RFC 7541 §5.2).
fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_integer(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// Text of a test's bytes.
#[cfg(test)]
fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("test fields are UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of an RFC-style hex dump.
    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// Decodes `block`, returning its fields.
    fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, Error> {
        let mut fields = Vec::new();
        decoder.decode(block, |n, v| fields.push((text(n), text(v))))?;
        Ok(fields)
    }

    /// Owned fields from string pairs.
    fn owned(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    /// Huffman-encodes `src` (RFC 7541 §5.2): test-only, the client never encodes with Huffman.
    fn huffman_encode(src: &[u8], out: &mut Vec<u8>) {
        let mut acc = 0u64;
        let mut bits = 0u32;
        for &byte in src {
            let (code, len) = HUFFMAN_CODES[usize::from(byte)];
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
        }
    }

    /// Huffman-decodes `src` into a new buffer.
    fn huffman_bytes(src: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        huffman_decode(src, &mut out)?;
        Ok(out)
    }

    /// A Huffman-coded string literal.
    fn huffman_string(out: &mut Vec<u8>, s: &[u8]) {
        let mut coded = Vec::new();
        huffman_encode(s, &mut coded);
        encode_integer(out, 0x80, 7, coded.len());
        out.extend_from_slice(&coded);
    }

    #[test]
    fn strings_met_again_decode_the_same_from_memory() {
        // Literal without indexing, a literal name: 0x00, then name and value, Huffman-coded.
        let field = |name: &str, value: &str| {
            let mut block = vec![0x00];
            huffman_string(&mut block, name.as_bytes());
            huffman_string(&mut block, value.as_bytes());
            block
        };
        let mut decoder = Decoder::new(4096);
        // More distinct strings than are remembered, each seen several times, in turns.
        let values: Vec<String> = (0..2 * RECENT)
            .map(|i| format!("value number {i}"))
            .collect();
        for round in 0..3 {
            for (i, value) in values.iter().enumerate() {
                let name = format!("x-{}", i % 3);
                let got = decode(&mut decoder, &field(&name, value)).unwrap();
                assert_eq!(got, owned(&[(&name, value)]), "round {round}");
                // The same string twice in a row comes from memory the second time.
                let got = decode(&mut decoder, &field(&name, value)).unwrap();
                assert_eq!(got, owned(&[(&name, value)]), "round {round}, again");
            }
        }
        // A string that does not decode is refused every time, never remembered.
        let mut bad = vec![0x00, 0x81, 0xff, 0x81, 0xfe];
        bad[2] = 0xff;
        for _ in 0..2 {
            assert!(decode(&mut decoder, &bad).is_err());
        }
    }

    const REQ1: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    const REQ2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQ3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    const RESP1: &[(&str, &str)] = &[
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESP2: &[(&str, &str)] = &[
        (":status", "307"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESP3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ("location", "https://www.example.com"),
        ("content-encoding", "gzip"),
        (
            "set-cookie",
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ),
    ];

    /// One block of a sequence: its hex dump, its fields, the table after it (newest first) and
    /// the table's size.
    type SeqBlock<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        usize,
    );

    /// Decodes a sequence of blocks on one decoder of `max` bytes, checking each block's fields
    /// and the table (entries newest first, and its size) after it.
    fn sequence(max: usize, steps: &[SeqBlock]) {
        let mut d = Decoder::new(max);
        for (i, &(block, fields, table, size)) in steps.iter().enumerate() {
            assert_eq!(
                decode(&mut d, &hex(block)).unwrap(),
                owned(fields),
                "block {i}"
            );
            assert_eq!(d.table_entries(), owned(table), "table after block {i}");
            assert_eq!(d.table_size(), size, "table size after block {i}");
        }
    }

    /// RFC 7541 C.1: integers.
    #[test]
    fn c1_integers() {
        for (bytes, prefix, value) in [
            (&[0x0a][..], 5, 10),
            (&[0x1f, 0x9a, 0x0a][..], 5, 1337),
            (&[0x2a][..], 8, 42),
        ] {
            let mut pos = 0;
            assert_eq!(integer(bytes, &mut pos, prefix), Ok(value));
            assert_eq!(pos, bytes.len());
            let mut out = Vec::new();
            encode_integer(&mut out, 0, prefix, value as usize);
            assert_eq!(out, bytes);
        }
        // Round trips at the edges of every prefix and of 32 bits.
        for prefix in 4..=7 {
            for value in [
                0, 1, 14, 15, 16, 30, 31, 32, 62, 63, 64, 126, 127, 128, 255, 256,
            ]
            .into_iter()
            .chain([
                16_383,
                16_384,
                1 << 21,
                (1 << 28) + 5,
                u32::MAX - 1,
                u32::MAX,
            ]) {
                let mut out = vec![0xff];
                encode_integer(&mut out, 0xe0 & (0xff << prefix), prefix, value as usize);
                let mut pos = 1;
                assert_eq!(
                    integer(&out, &mut pos, prefix),
                    Ok(value),
                    "{value}/{prefix}"
                );
                assert_eq!(pos, out.len());
            }
        }
    }

    /// RFC 7541 C.2.1 to C.2.4: one field each, on a new decoder.
    #[test]
    fn c2_single_fields() {
        sequence(
            4096,
            &[(
                "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                &[("custom-key", "custom-header")],
                &[("custom-key", "custom-header")],
                55,
            )],
        );
        sequence(
            4096,
            &[(
                "040c 2f73 616d 706c 652f 7061 7468",
                &[(":path", "/sample/path")],
                &[],
                0,
            )],
        );
        sequence(
            4096,
            &[(
                "1008 7061 7373 776f 7264 0673 6563 7265 74",
                &[("password", "secret")],
                &[],
                0,
            )],
        );
        sequence(4096, &[("82", &[(":method", "GET")], &[], 0)]);
    }

    const REQ_TABLES: [&[(&str, &str)]; 3] = [
        &[(":authority", "www.example.com")],
        &[
            ("cache-control", "no-cache"),
            (":authority", "www.example.com"),
        ],
        &[
            ("custom-key", "custom-value"),
            ("cache-control", "no-cache"),
            (":authority", "www.example.com"),
        ],
    ];

    /// RFC 7541 C.3: requests without Huffman coding.
    #[test]
    fn c3_requests() {
        sequence(
            4096,
            &[
                (
                    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                    REQ1,
                    REQ_TABLES[0],
                    57,
                ),
                (
                    "8286 84be 5808 6e6f 2d63 6163 6865",
                    REQ2,
                    REQ_TABLES[1],
                    110,
                ),
                (
                    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                    REQ3,
                    REQ_TABLES[2],
                    164,
                ),
            ],
        );
    }

    /// RFC 7541 C.4: the same requests with Huffman coding.
    #[test]
    fn c4_requests_huffman() {
        sequence(
            4096,
            &[
                (
                    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                    REQ1,
                    REQ_TABLES[0],
                    57,
                ),
                ("8286 84be 5886 a8eb 1064 9cbf", REQ2, REQ_TABLES[1], 110),
                (
                    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                    REQ3,
                    REQ_TABLES[2],
                    164,
                ),
            ],
        );
    }

    const RESP_TABLES: [&[(&str, &str)]; 3] = [
        &[
            ("location", "https://www.example.com"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("cache-control", "private"),
            (":status", "302"),
        ],
        &[
            (":status", "307"),
            ("location", "https://www.example.com"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("cache-control", "private"),
        ],
        &[
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
            ("content-encoding", "gzip"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ],
    ];

    /// RFC 7541 C.5: responses without Huffman coding, a 256-byte table, evictions.
    #[test]
    fn c5_responses() {
        sequence(
            256,
            &[
                (
                    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
                     2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
                     6c65 2e63 6f6d",
                    RESP1,
                    RESP_TABLES[0],
                    222,
                ),
                ("4803 3330 37c1 c0bf", RESP2, RESP_TABLES[1], 222),
                (
                    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
                     54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
                     5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
                     3d31",
                    RESP3,
                    RESP_TABLES[2],
                    215,
                ),
            ],
        );
    }

    /// RFC 7541 C.6: the same responses with Huffman coding.
    #[test]
    fn c6_responses_huffman() {
        sequence(
            256,
            &[
                (
                    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
                     2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                    RESP1,
                    RESP_TABLES[0],
                    222,
                ),
                ("4883 640e ffc1 c0bf", RESP2, RESP_TABLES[1], 222),
                (
                    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
                     77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
                     9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                    RESP3,
                    RESP_TABLES[2],
                    215,
                ),
            ],
        );
    }

    /// Every error variant, from a crafted block.
    #[test]
    fn errors() {
        let cases: &[(&[u8], Error)] = &[
            // Indexed, 127 + 0x7f + ... + 0x0f << 28 = 2^32 + 126.
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f],
                Error::IntegerOverflow,
            ),
            // A small value padded with a sixth continuation byte.
            (
                &[0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
                Error::IntegerOverflow,
            ),
            // A string length past 32 bits.
            (
                &[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f],
                Error::IntegerOverflow,
            ),
            // Indexed, the block ends in the continuation.
            (&[0xff], Error::Truncated),
            (&[0xff, 0x80], Error::Truncated),
            // Literal with a new name, the block ends before the name.
            (&[0x40], Error::Truncated),
            // Literal with an indexed name, the block ends before the value.
            (&[0x41], Error::Truncated),
            (&[0x00, 0x01, b'a'], Error::Truncated),
            (&[0x80], Error::IndexZero),
            (
                &[0xbe],
                Error::IndexOutOfRange {
                    index: 62,
                    dynamic: 0,
                },
            ),
            // A literal naming a dynamic entry that does not exist.
            (
                &[0x7e, 0x00],
                Error::IndexOutOfRange {
                    index: 62,
                    dynamic: 0,
                },
            ),
            // A literal without indexing whose value is 32 ones: EOS after 30.
            (&[0x01, 0x84, 0xff, 0xff, 0xff, 0xff], Error::HuffmanEos),
            // "a" (00011) then 11 bits of ones.
            (&[0x01, 0x82, 0x1f, 0xff], Error::HuffmanPaddingTooLong),
            // A name of 8 bits of ones alone.
            (&[0x00, 0x81, 0xff, 0x00], Error::HuffmanPaddingTooLong),
            // "a" (00011) then 000: the start of another symbol, not EOS.
            (&[0x01, 0x81, 0x18], Error::HuffmanPaddingNotOnes),
            // 4097 in a 5-bit prefix.
            (
                &[0x3f, 0xe2, 0x1f],
                Error::SizeUpdateTooLarge {
                    size: 4097,
                    max: 4096,
                },
            ),
            (&[0x82, 0x20], Error::SizeUpdateNotAtStart),
            (
                &[0x01, 0x05, b'a'],
                Error::StringPastEnd { len: 5, left: 1 },
            ),
            (
                &[0x00, 0x03, b'a', b'b'],
                Error::StringPastEnd { len: 3, left: 2 },
            ),
        ];
        for &(block, error) in cases {
            let mut d = Decoder::new(4096);
            assert_eq!(d.decode(block, |_, _| {}), Err(error), "{block:02x?}");
            assert!(!error.to_string().is_empty());
        }
        // A dynamic index one past the end, with entries.
        let mut d = Decoder::new(4096);
        decode(
            &mut d,
            &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
        )
        .unwrap();
        assert_eq!(
            decode(&mut d, &[0xbe]).unwrap(),
            owned(&[("custom-key", "custom-header")])
        );
        assert_eq!(
            decode(&mut d, &[0xbf]),
            Err(Error::IndexOutOfRange {
                index: 63,
                dynamic: 1
            })
        );
        // A smaller advertised limit.
        let mut d = Decoder::new(100);
        assert_eq!(
            decode(&mut d, &[0x3f, 0x46]),
            Err(Error::SizeUpdateTooLarge {
                size: 101,
                max: 100
            })
        );
    }

    /// Size updates: several at the start of a block, eviction, zero, and back up to the limit.
    #[test]
    fn size_updates() {
        let mut d = Decoder::new(4096);
        let block = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        decode(&mut d, &block).unwrap();
        assert_eq!(d.table_size(), 57);
        // To 4096 (3fe11f), then to 0: empties the table; the fields after still decode.
        let mut block = vec![0x3f, 0xe1, 0x1f, 0x20, 0x82];
        assert_eq!(
            decode(&mut d, &block).unwrap(),
            owned(&[(":method", "GET")])
        );
        assert_eq!(d.table_size(), 0);
        assert_eq!(
            decode(&mut d, &[0xbe]),
            Err(Error::IndexOutOfRange {
                index: 62,
                dynamic: 0
            })
        );
        // With a maximum of 0, an indexed literal is emitted but not added.
        block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        assert_eq!(
            decode(&mut d, &block).unwrap(),
            owned(&[("custom-key", "custom-header")])
        );
        assert_eq!(d.table_size(), 0);
        // Back up to 55 (3f18): exactly one such entry; a second evicts the first.
        let mut block2 = vec![0x3f, 0x18];
        block2.extend_from_slice(&block);
        decode(&mut d, &block2).unwrap();
        assert_eq!(d.table_size(), 55);
        // A size update alone is a valid block; it shrinks to 54 and evicts.
        decode(&mut d, &[0x3f, 0x17]).unwrap();
        assert_eq!(d.table_size(), 0);
    }

    /// An insertion that evicts the entry whose name it uses (RFC 7541 §4.4), and an entry
    /// larger than the table, named by a dynamic entry.
    #[test]
    fn insertion_naming_an_evicted_entry() {
        // A 100-byte table with "custom-key: custom-header" (55).
        let mut d = Decoder::new(100);
        let first = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        decode(&mut d, &first).unwrap();
        // Name index 62, a 20-byte value: 10 + 20 + 32 = 62, the first must go.
        let mut block = vec![0x7e, 20];
        block.extend_from_slice(b"abcdefghijklmnopqrst");
        assert_eq!(
            decode(&mut d, &block).unwrap(),
            owned(&[("custom-key", "abcdefghijklmnopqrst")])
        );
        assert_eq!(
            d.table_entries(),
            owned(&[("custom-key", "abcdefghijklmnopqrst")])
        );
        assert_eq!(d.table_size(), 62);
        // Name index 62, a 60-byte value: larger than the table; emitted, table emptied.
        let mut block = vec![0x7e, 60];
        block.extend_from_slice(&[b'x'; 60]);
        let fields = decode(&mut d, &block).unwrap();
        assert_eq!(fields, owned(&[("custom-key", &"x".repeat(60))]));
        assert_eq!(d.table_size(), 0);
        assert!(d.table_entries().is_empty());
    }

    /// A small deterministic generator (SplitMix64).
    struct SplitMix(u64);

    impl SplitMix {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
    }

    /// The dynamic table against a plain model through many insertions, evictions, size
    /// updates, references to existing entries and the compaction of its buffer; and its
    /// buffers are not reallocated once warm.
    #[test]
    fn table_matches_a_model() {
        let limit = 300;
        let mut d = Decoder::new(limit);
        let mut rng = SplitMix(7);
        // Entries newest first, and the current maximum.
        let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut max = limit;
        let model_size =
            |m: &[(Vec<u8>, Vec<u8>)]| m.iter().map(|(n, v)| n.len() + v.len() + 32).sum::<usize>();
        let mut buffers = None;
        for round in 0..5_000u32 {
            let mut block = Vec::new();
            let mut want = Vec::new();
            if rng.below(20) == 0 {
                max = rng.below(limit as u64 + 1) as usize;
                encode_integer(&mut block, 0x20, 5, max);
                while model_size(&model) > max {
                    model.pop();
                }
            }
            for _ in 0..rng.below(6) {
                let kind = rng.below(4);
                let value: Vec<u8> = (0..rng.below(90)).map(|i| b'a' + (i % 26) as u8).collect();
                // The name: static, dynamic (when there is one) or literal.
                let (index, name) = match rng.below(3) {
                    0 if !model.is_empty() => {
                        let i = rng.below(model.len() as u64) as usize;
                        (62 + i, model[i].0.clone())
                    }
                    1 => {
                        let i = 1 + rng.below(61) as usize;
                        (i, STATIC[i - 1].0.to_vec())
                    }
                    _ => (0, format!("name-{round}").into_bytes()),
                };
                if kind == 0 && !model.is_empty() {
                    // Indexed dynamic field.
                    let i = rng.below(model.len() as u64) as usize;
                    encode_integer(&mut block, 0x80, 7, 62 + i);
                    want.push(model[i].clone());
                    continue;
                }
                let (flags, prefix) = if kind == 1 { (0x00, 4) } else { (0x40, 6) };
                encode_integer(&mut block, flags, prefix, index);
                if index == 0 {
                    huffman_string(&mut block, &name);
                }
                if rng.below(2) == 0 {
                    huffman_string(&mut block, &value);
                } else {
                    encode_string(&mut block, &value);
                }
                want.push((name.clone(), value.clone()));
                if kind != 1 {
                    model.insert(0, (name, value));
                    while model_size(&model) > max {
                        model.pop();
                    }
                }
            }
            let mut got = Vec::new();
            d.decode(&block, |n, v| got.push((n.to_vec(), v.to_vec())))
                .unwrap();
            assert_eq!(got, want, "round {round}");
            assert_eq!(d.table_size(), model_size(&model), "round {round}");
            let entries: Vec<(Vec<u8>, Vec<u8>)> = d
                .table_entries()
                .into_iter()
                .map(|(n, v)| (n.into_bytes(), v.into_bytes()))
                .collect();
            assert_eq!(entries, model, "round {round}");
            if round == 1_000 {
                buffers = Some((d.table.bytes.as_ptr(), d.table.bytes.capacity()));
            }
            if round > 1_000 {
                assert_eq!(
                    Some((d.table.bytes.as_ptr(), d.table.bytes.capacity())),
                    buffers
                );
            }
        }
        assert_eq!(d.table.bytes.capacity(), 2 * limit);
    }

    /// Every symbol round-trips through the test encoder, in every bit alignment, and the
    /// padding of every length from 0 to 7 is accepted.
    #[test]
    fn huffman_round_trips() {
        for sym in 0..=255u8 {
            // "0" is 5 bits: k of them shift the symbol by 5k mod 8, every alignment.
            for k in 0..8 {
                let mut s = vec![b'0'; k];
                s.push(sym);
                let mut coded = Vec::new();
                huffman_encode(&s, &mut coded);
                assert_eq!(huffman_bytes(&coded), Ok(s), "symbol {sym} after {k}");
            }
        }
        let all: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        let mut coded = Vec::new();
        huffman_encode(&all, &mut coded);
        assert_eq!(huffman_bytes(&coded), Ok(all));
        assert_eq!(huffman_bytes(&[]), Ok(Vec::new()));
        // Strings from RFC 7541 Appendix C.
        for (coded, plain) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            ("9bd9 ab", "gzip"),
        ] {
            assert_eq!(huffman_bytes(&hex(coded)), Ok(plain.as_bytes().to_vec()));
        }
    }

    /// Padding: any prefix of EOS up to 7 bits is valid, 8 or more is not, zeros are not, and
    /// EOS itself is refused wherever it starts.
    #[test]
    fn huffman_padding() {
        // '0' is 00000 (5 bits): 1 to 8 of them, each padded with ones to the byte.
        for k in 1..=8 {
            let mut coded = Vec::new();
            huffman_encode(&vec![b'0'; k], &mut coded);
            let padding = coded.len() * 8 - 5 * k;
            assert!(padding <= 7);
            assert_eq!(huffman_bytes(&coded), Ok(vec![b'0'; k]));
            // One more byte of ones: padding of 8 or more.
            coded.push(0xff);
            assert_eq!(huffman_bytes(&coded), Err(Error::HuffmanPaddingTooLong));
            // The last padding bit zero instead of one.
            coded.pop();
            if padding > 0 {
                *coded.last_mut().unwrap() &= 0xfe;
                assert_eq!(huffman_bytes(&coded), Err(Error::HuffmanPaddingNotOnes));
            }
        }
        assert_eq!(huffman_bytes(&[0xff]), Err(Error::HuffmanPaddingTooLong));
        assert_eq!(huffman_bytes(&[0x00]), Err(Error::HuffmanPaddingNotOnes));
        // EOS (30 ones) after 0 to 7 bits of '0's.
        for k in 0..8 {
            let mut coded = Vec::new();
            huffman_encode(&vec![b'0'; k], &mut coded);
            let bits = 5 * k;
            // Rebuild: k zero symbols, then 30 ones, then ones padding.
            let total = bits + 30;
            let mut acc = vec![0u8; total.div_ceil(8)];
            for bit in bits..acc.len() * 8 {
                acc[bit / 8] |= 0x80 >> (bit % 8);
            }
            assert_eq!(huffman_bytes(&acc), Err(Error::HuffmanEos), "after {k}");
        }
    }

    /// The request encoder: indexed fields where the static table has them, literals without
    /// indexing otherwise; decoded back to the same fields without touching the table.
    #[test]
    fn encode_request_round_trips() {
        let fields: &[(&[u8], &[u8])] = &[
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b":authority", b"127.0.0.1:8080"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"user-agent", b"gapless/0.1.0"),
            (b"x-request-kind", b"load"),
            (b"accept", b""),
            (b"x-long", &[b'v'; 300]),
        ];
        let mut out = Vec::new();
        encode_request(fields, &mut out);
        assert_eq!(&out[..3], &[0x82, 0x86, 0x84]);
        // :authority: name index 1, literal without indexing.
        assert_eq!(&out[3..5], &[0x01, 14]);
        let mut d = Decoder::new(4096);
        let mut got = Vec::new();
        d.decode(&out, |n, v| got.push((n.to_vec(), v.to_vec())))
            .unwrap();
        let want: Vec<(Vec<u8>, Vec<u8>)> = fields
            .iter()
            .map(|&(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(d.table_size(), 0);
        // Only the literal-without-indexing and indexed forms, and the same bytes again.
        let mut again = Vec::new();
        encode_request(fields, &mut again);
        assert_eq!(again, out);
        let other: &[(&[u8], &[u8])] = &[(b":method", b"POST"), (b":path", b"/index.html")];
        let mut out = Vec::new();
        encode_request(other, &mut out);
        assert_eq!(out, [0x83, 0x85]);
        let other: &[(&[u8], &[u8])] = &[(b":method", b"PUT"), (b"x", b"y")];
        let mut out = Vec::new();
        encode_request(other, &mut out);
        assert_eq!(out, [0x02, 3, b'P', b'U', b'T', 0x00, 1, b'x', 1, b'y']);
    }

    /// An nginx response head as nginx encodes it: `:status` indexed, every other field a literal
    /// with incremental indexing and a static name, the values Huffman-coded.
    fn nginx_block(date: &str) -> Vec<u8> {
        let mut block = vec![0x88];
        for (index, value) in [
            (54, "nginx/1.26.3"),
            (33, date),
            (31, "text/html"),
            (28, "615"),
            (44, "Tue, 13 Aug 2024 12:00:00 GMT"),
            (34, "\"66bb4a10-267\""),
            (18, "bytes"),
        ] {
            encode_integer(&mut block, 0x40, 6, index);
            huffman_string(&mut block, value.as_bytes());
        }
        block
    }

    /// The nginx-like block decodes to its fields, every time, on one long-lived decoder.
    #[test]
    fn nginx_blocks() {
        let mut d = Decoder::new(4096);
        for i in 0..200 {
            let date = format!("Wed, 14 Aug 2024 10:{:02}:{:02} GMT", i / 60, i % 60);
            let fields = decode(&mut d, &nginx_block(&date)).unwrap();
            assert_eq!(fields.len(), 8);
            assert_eq!(fields[0], (":status".into(), "200".into()));
            assert_eq!(fields[1], ("server".into(), "nginx/1.26.3".into()));
            assert_eq!(fields[2], ("date".into(), date));
            assert_eq!(fields[7], ("accept-ranges".into(), "bytes".into()));
            assert!(d.table_size() <= 4096);
        }
    }

    /// Nanoseconds per decode of the nginx-like block (release build:
    /// `cargo test --release --lib hpack -- --ignored --nocapture`).
    #[test]
    #[ignore = "measurement"]
    fn measure_nginx_block() {
        let blocks: Vec<Vec<u8>> = (0..60)
            .map(|s| nginx_block(&format!("Wed, 14 Aug 2024 10:00:{s:02} GMT")))
            .collect();
        let mut d = Decoder::new(4096);
        let mut bytes = 0usize;
        for block in &blocks {
            d.decode(block, |n, v| bytes += n.len() + v.len()).unwrap();
        }
        let rounds = 2_000_000;
        for _ in 0..3 {
            let start = std::time::Instant::now();
            for i in 0..rounds {
                d.decode(std::hint::black_box(&blocks[i % blocks.len()]), |n, v| {
                    bytes += n.len() + v.len();
                })
                .unwrap();
            }
            let ns = start.elapsed().as_nanos() as f64 / rounds as f64;
            println!(
                "hpack: {ns:.1} ns per nginx-like response block ({} bytes, 8 fields, 7 inserted)",
                blocks[0].len()
            );
        }
        std::hint::black_box(bytes);
    }
}
