//! The order in which a SendStream's content must arrive, as a state
//! machine without I/O: attachment by attachment in envelope order, each
//! exactly its declared size, in non-empty chunks of at most
//! `limits.max_chunk_bytes`. The gateway writes each chunk where
//! [`ChunkSequence::accept`] says; being pure, the machine is tested and
//! fuzzed alone.

use crate::envelope::{Envelope, EnvelopeError, Limits};

/// Where a SendStream stands in its attachments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSequence {
    /// Each attachment's name and declared size, in envelope order.
    attachments: Vec<(String, u64)>,
    /// The attachment being received; `attachments.len()` once complete.
    current: usize,
    /// Bytes of the current attachment received so far.
    received: u64,
    max_chunk: u64,
}

impl ChunkSequence {
    /// The sequence for a streamed envelope whose attachments declared
    /// `sizes` (in order; [`crate::envelope::RawEnvelope::validate_streamed`]
    /// checked that there is one per attachment).
    pub fn new(envelope: &Envelope, sizes: &[u64], limits: &Limits) -> Self {
        let attachments = envelope
            .attachments
            .iter()
            .zip(sizes)
            .map(|(attachment, &size)| (attachment.name.clone(), size))
            .collect();
        let mut sequence = Self {
            attachments,
            current: 0,
            received: 0,
            max_chunk: limits.max_chunk_bytes,
        };
        sequence.skip_empty();
        sequence
    }

    /// Attachments of size 0 need no chunk.
    fn skip_empty(&mut self) {
        while self
            .attachments
            .get(self.current)
            .is_some_and(|(_, size)| *size == 0)
        {
            self.current += 1;
        }
    }

    /// Takes a chunk of `len` bytes named for `attachment`; answers the
    /// index of the attachment its bytes belong to (never decreasing), or
    /// why the chunk breaks the order.
    pub fn accept(&mut self, attachment: &str, len: u64) -> Result<usize, EnvelopeError> {
        let Some((expected, size)) = self.attachments.get(self.current) else {
            return Err(Self::beyond());
        };
        if attachment != expected {
            return Err(EnvelopeError::invalid(
                "chunk.attachment",
                format!(
                    "{attachment:?} arrived while {expected:?} still lacks {} bytes: chunks go attachment by attachment, in envelope order",
                    size - self.received
                ),
            ));
        }
        if len == 0 {
            return Err(EnvelopeError::invalid(
                "chunk.data",
                "an empty chunk: every chunk carries at least one byte",
            ));
        }
        if len > self.max_chunk {
            return Err(EnvelopeError::TooLarge {
                field: "chunk.data".to_owned(),
                size: len,
                limit: self.max_chunk,
            });
        }
        if len > size - self.received {
            return Err(EnvelopeError::invalid(
                "chunk.data",
                format!("attachment {expected:?} is longer than its declared size of {size} bytes"),
            ));
        }
        let index = self.current;
        self.received += len;
        if self.received == *size {
            self.current += 1;
            self.received = 0;
            self.skip_empty();
        }
        Ok(index)
    }

    /// True once every attachment has all its declared bytes.
    pub fn is_complete(&self) -> bool {
        self.current >= self.attachments.len()
    }

    /// The error for a stream that ended before [`ChunkSequence::is_complete`].
    pub fn ended_early(&self) -> EnvelopeError {
        match self.attachments.get(self.current) {
            Some((name, size)) => EnvelopeError::invalid(
                "chunk",
                format!(
                    "the stream ended after {} of the {size} bytes of attachment {name:?}",
                    self.received
                ),
            ),
            None => EnvelopeError::invalid("chunk", "the stream ended early"),
        }
    }

    /// The error for a chunk after the last declared byte.
    pub fn beyond() -> EnvelopeError {
        EnvelopeError::invalid(
            "chunk",
            "content beyond the declared sizes of the attachments",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Attachment, DocumentInfo, MessageId, OrgCode};

    fn sequence(attachments: &[(&str, u64)], max_chunk: u64) -> ChunkSequence {
        let envelope = Envelope {
            message_id: MessageId::parse("m-1", "id").expect("id"),
            from: OrgCode::parse("000.00.12.H56", "from").expect("code"),
            to: Vec::new(),
            document: DocumentInfo::default(),
            attachments: attachments
                .iter()
                .map(|(name, _)| Attachment {
                    name: (*name).to_owned(),
                    media_type: "application/pdf".to_owned(),
                    content: Vec::new(),
                })
                .collect(),
            signatures: Vec::new(),
        };
        let sizes: Vec<u64> = attachments.iter().map(|(_, size)| *size).collect();
        let limits = Limits {
            max_chunk_bytes: max_chunk,
            ..Limits::default()
        };
        ChunkSequence::new(&envelope, &sizes, &limits)
    }

    #[test]
    fn attachments_arrive_in_order_each_exactly_its_size() {
        let mut s = sequence(&[("a", 5), ("empty", 0), ("b", 3)], 4);
        assert!(!s.is_complete());
        assert_eq!(s.accept("a", 4).expect("a"), 0);
        assert_eq!(s.accept("a", 1).expect("a"), 0);
        // The empty attachment needs no chunk.
        assert_eq!(s.accept("b", 3).expect("b"), 2);
        assert!(s.is_complete());
        let beyond = s.accept("b", 1).expect_err("after the last byte");
        assert!(beyond.to_string().contains("beyond the declared sizes"));
    }

    #[test]
    fn every_break_of_the_order_is_refused_naming_what_was_expected() {
        let mut s = sequence(&[("a", 5), ("b", 3)], 4);
        let wrong = s.accept("b", 1).expect_err("b before a");
        assert!(
            wrong.to_string().contains("\"a\" still lacks 5 bytes"),
            "{wrong}"
        );
        let empty = s.accept("a", 0).expect_err("empty chunk");
        assert!(empty.to_string().contains("empty chunk"), "{empty}");
        let large = s.accept("a", 5).expect_err("over max_chunk");
        assert!(matches!(large, EnvelopeError::TooLarge { .. }), "{large}");
        s.accept("a", 4).expect("a");
        let long = s.accept("a", 2).expect_err("past the declared size");
        assert!(
            long.to_string().contains("longer than its declared size"),
            "{long}"
        );
        // A refused chunk changes nothing.
        assert_eq!(s.accept("a", 1).expect("a"), 0);
        let ended = s.ended_early();
        assert!(
            ended
                .to_string()
                .contains("after 0 of the 3 bytes of attachment \"b\""),
            "{ended}"
        );
    }

    #[test]
    fn no_attachments_or_only_empty_ones_are_complete_at_once() {
        assert!(sequence(&[], 4).is_complete());
        assert!(sequence(&[("a", 0), ("b", 0)], 4).is_complete());
    }
}
