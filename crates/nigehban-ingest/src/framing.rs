//! Syslog framing over a byte stream (RFC 6587, RFC 5425), detected per message: a message
//! that starts with a decimal length and a space is octet-counted (`<len> <msg>`); any other
//! message runs to a line feed (CRLF and NUL are tolerated as terminators). Memory is bounded:
//! the framer never holds more than one message of at most the configured size.

use bytes::Bytes;

/// The longest octet count read (10 digits: up to 9,999,999,999 bytes); longer digit runs are
/// the start of a newline-framed message.
const MAX_DIGITS: usize = 10;

/// Messages can be no shorter than this limit, so that a digit run always fits the buffer.
const MIN_LIMIT: usize = 16;

/// What went wrong while framing, to be counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameOutcome {
    /// Messages longer than the limit: truncated to it, the rest discarded.
    pub truncated: usize,
    /// The stream ended inside an octet-counted message (what had arrived is still emitted).
    pub framing_errors: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between messages: line feeds, carriage returns and NULs are skipped.
    Start,
    /// Reading what may be an octet count; its digits are in the buffer.
    Digits,
    /// Inside an octet-counted message: bytes still to take, then bytes to discard (the part
    /// beyond the limit).
    Octets { take: usize, skip: u64 },
    /// Discarding the rest of an over-long octet-counted message.
    SkipOctets(u64),
    /// Inside a newline-terminated message.
    Line,
    /// Discarding the rest of an over-long line, up to its terminator.
    SkipLine,
}

/// Splits one connection's byte stream into messages. Feed it what was read with
/// [`Framer::push`] and call [`Framer::finish`] when the stream ends.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    buf: Vec<u8>,
    state: State,
}

impl Framer {
    /// A framer for messages of at most `max_message` bytes (at least 16).
    pub fn new(max_message: usize) -> Self {
        Framer { max: max_message.max(MIN_LIMIT), buf: Vec::new(), state: State::Start }
    }

    /// The message size limit.
    pub fn max_message(&self) -> usize {
        self.max
    }

    /// Bytes held for the message being read (never more than the limit).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Frames `data`, appending every complete message to `out` (without framing and
    /// without trailing LF, CR or NUL; empty messages are left out).
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Bytes>) -> FrameOutcome {
        let mut outcome = FrameOutcome::default();
        while let Some(&first) = data.first() {
            match self.state {
                State::Start => {
                    if matches!(first, b'\n' | b'\r' | 0) {
                        data = &data[1..];
                    } else if first.is_ascii_digit() {
                        self.state = State::Digits;
                    } else {
                        self.state = State::Line;
                    }
                }
                State::Digits => {
                    if first.is_ascii_digit() && self.buf.len() < MAX_DIGITS {
                        self.buf.push(first);
                        data = &data[1..];
                    } else if first == b' ' {
                        data = &data[1..];
                        // At most 10 ASCII digits: always a valid u64.
                        let len = self.buf.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                        self.buf.clear();
                        let take = usize::try_from(len).unwrap_or(usize::MAX).min(self.max);
                        let skip = len - take as u64;
                        if skip > 0 {
                            outcome.truncated += 1;
                        }
                        self.state = if take > 0 {
                            State::Octets { take, skip }
                        } else if skip > 0 {
                            State::SkipOctets(skip)
                        } else {
                            State::Start
                        };
                    } else {
                        // Not an octet count: the digits begin a newline-framed message.
                        self.state = State::Line;
                    }
                }
                State::Octets { take, skip } => {
                    let n = take.min(data.len());
                    self.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if n == take {
                        self.emit(out);
                        self.state = if skip > 0 { State::SkipOctets(skip) } else { State::Start };
                    } else {
                        self.state = State::Octets { take: take - n, skip };
                    }
                }
                State::SkipOctets(skip) => {
                    let n = skip.min(data.len() as u64);
                    // n <= data.len(), so the conversion is exact.
                    data = &data[n as usize..];
                    self.state = if n == skip { State::Start } else { State::SkipOctets(skip - n) };
                }
                State::Line => {
                    let room = self.max - self.buf.len();
                    match memchr::memchr2(b'\n', 0, data) {
                        Some(end) => {
                            if end > room {
                                self.buf.extend_from_slice(&data[..room]);
                                outcome.truncated += 1;
                            } else {
                                self.buf.extend_from_slice(&data[..end]);
                            }
                            data = &data[end + 1..];
                            self.emit(out);
                            self.state = State::Start;
                        }
                        None if data.len() > room => {
                            // Over the limit with no end in sight: send what fits now rather
                            // than hold more, and drop the rest of the line.
                            self.buf.extend_from_slice(&data[..room]);
                            outcome.truncated += 1;
                            data = &[];
                            self.emit(out);
                            self.state = State::SkipLine;
                        }
                        None => {
                            self.buf.extend_from_slice(data);
                            data = &[];
                        }
                    }
                }
                State::SkipLine => match memchr::memchr2(b'\n', 0, data) {
                    Some(end) => {
                        data = &data[end + 1..];
                        self.state = State::Start;
                    }
                    None => data = &[],
                },
            }
        }
        debug_assert!(self.buf.len() <= self.max);
        outcome
    }

    /// The stream ended: emits a last message that had no terminator, and counts a framing
    /// error if an octet-counted message was cut short.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> FrameOutcome {
        let mut outcome = FrameOutcome::default();
        if matches!(self.state, State::Octets { .. } | State::SkipOctets(_)) {
            outcome.framing_errors += 1;
        }
        self.emit(out);
        self.state = State::Start;
        outcome
    }

    fn emit(&mut self, out: &mut Vec<Bytes>) {
        let mut end = self.buf.len();
        while end > 0 && matches!(self.buf[end - 1], b'\n' | b'\r' | 0) {
            end -= 1;
        }
        if end > 0 {
            out.push(Bytes::copy_from_slice(&self.buf[..end]));
        }
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(chunks: &[&[u8]], max: usize) -> (Vec<String>, FrameOutcome) {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        let mut total = FrameOutcome::default();
        for c in chunks {
            let o = f.push(c, &mut out);
            total.truncated += o.truncated;
            total.framing_errors += o.framing_errors;
        }
        let o = f.finish(&mut out);
        total.truncated += o.truncated;
        total.framing_errors += o.framing_errors;
        (out.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect(), total)
    }

    #[test]
    fn octet_counting_keeps_embedded_newlines() {
        let (msgs, o) = frame(&[b"11 <13>a\nb\nc d5 <13>x"], 1024);
        assert_eq!(msgs, ["<13>a\nb\nc d", "<13>x"]);
        assert_eq!(o, FrameOutcome::default());
    }

    #[test]
    fn newline_framing_with_crlf_nul_and_a_last_unterminated_line() {
        let (msgs, _) = frame(&[b"<13>one\r\n<13>two\0<13>th", b"ree\n\n<13>four"], 1024);
        assert_eq!(msgs, ["<13>one", "<13>two", "<13>three", "<13>four"]);
    }

    #[test]
    fn framing_is_chosen_per_message_and_digits_may_start_a_line() {
        let (msgs, _) = frame(&[b"5 <1>a\n2024-05-01 line\n3 ", b"abc12345678901 x\n"], 1024);
        assert_eq!(msgs, ["<1>a", "2024-05-01 line", "abc", "12345678901 x"]);
    }

    #[test]
    fn over_long_messages_are_truncated_and_counted() {
        let long = "x".repeat(40);
        let input = format!("40 {long}<1>next\n{long}\n<1>after\n");
        let (msgs, o) = frame(&[input.as_bytes()], 16);
        assert_eq!(msgs, ["x".repeat(16), "<1>next".to_owned(), "x".repeat(16), "<1>after".to_owned()]);
        assert_eq!(o.truncated, 2);
        // Split across reads, the rest of an over-long line is still dropped.
        let (msgs, o) = frame(&[long.as_bytes(), long.as_bytes(), b"\nok\n"], 16);
        assert_eq!(msgs, ["x".repeat(16), "ok".to_owned()]);
        assert_eq!(o.truncated, 1);
    }

    #[test]
    fn a_stream_ending_inside_an_octet_counted_message_is_a_framing_error() {
        let (msgs, o) = frame(&[b"20 <13>short"], 1024);
        assert_eq!(msgs, ["<13>short"]);
        assert_eq!(o.framing_errors, 1);
    }

    proptest! {
        /// Arbitrary bytes, cut anywhere: no panic, never more than the limit held or emitted.
        #[test]
        fn never_panics_nor_buffers_beyond_the_limit(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max in 16usize..200,
        ) {
            let mut f = Framer::new(max);
            let mut out = Vec::new();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                f.push(&data[start..cut], &mut out);
                prop_assert!(f.buffered() <= max);
                start = cut;
            }
            f.finish(&mut out);
            prop_assert_eq!(f.buffered(), 0);
            prop_assert!(out.iter().all(|m| !m.is_empty() && m.len() <= max));
        }

        /// Messages written with either framing come back as they were, however the stream is cut.
        #[test]
        fn round_trips_both_framings(
            msgs in proptest::collection::vec(("<[0-9]{1,3}>[ -~]{0,60}", any::<bool>()), 1..20),
            cut in any::<usize>(),
        ) {
            let mut stream = Vec::new();
            for (m, octet) in &msgs {
                if *octet {
                    stream.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
                } else {
                    stream.extend_from_slice(format!("{m}\n").as_bytes());
                }
            }
            let cut = cut % (stream.len() + 1);
            let mut f = Framer::new(1024);
            let mut out = Vec::new();
            f.push(&stream[..cut], &mut out);
            f.push(&stream[cut..], &mut out);
            f.finish(&mut out);
            let expected: Vec<&str> = msgs.iter().map(|(m, _)| m.as_str()).collect();
            let got: Vec<String> = out.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
