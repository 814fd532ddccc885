//! Instants as the domain sees them.
//!
//! Time is always passed in by the caller (core never reads the clock) and is
//! kept as whole milliseconds since the Unix epoch so both storage backends
//! store it as one integer. On the wire it is RFC 3339, as people expect.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = DateTime))]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub const fn as_millis(self) -> i64 {
        self.0
    }
    /// This time moved by `ms` (negative: earlier), saturating at the ends.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
    /// Whole seconds, as JWT `exp`/`iat` want them.
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    pub fn from_offset(t: OffsetDateTime) -> Self {
        Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64)
    }
    pub fn to_offset(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
    pub fn rfc3339(self) -> String {
        self.to_offset()
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.0.to_string())
    }
    pub fn parse_rfc3339(s: &str) -> Result<Self, crate::RuleError> {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::from_offset)
            .map_err(|e| {
                crate::RuleError::invalid("timestamp", format!("{s:?} is not RFC 3339: {e}"))
            })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_keeps_millis() {
        let t = Timestamp::from_millis(1_795_000_000_123);
        assert_eq!(Timestamp::parse_rfc3339(&t.rfc3339()).unwrap(), t);
        assert_eq!(t.as_secs(), 1_795_000_000);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
