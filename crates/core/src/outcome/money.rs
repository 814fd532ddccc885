//! Money without floating point: an ISO 4217 currency code and an amount in
//! ten-thousandths of its unit, written on the wire as a decimal string.
//!
//! Finance re-adds every figure Mandate reports; binary floats would make the
//! sums disagree in the last cent, so amounts are integers end to end.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::RuleError;

/// Decimal places kept: enough for per-token prices and sub-cent costs.
pub const SCALE: u32 = 4;
const UNIT: i64 = 10_i64.pow(SCALE);
/// The largest single amount accepted (100 million units), so that sums over
/// tens of millions of outcomes stay far inside `i64`.
pub const MAX_AMOUNT: i64 = 100_000_000 * UNIT;

/// An amount in ten-thousandths of a currency unit. Inputs (values, costs,
/// baselines) are never negative; computed figures such as net may be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "125.50"))]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// From ten-thousandths (the stored form). Sums may exceed
    /// [`MAX_AMOUNT`]; only parsed input is capped.
    pub const fn from_units(u: i64) -> Self {
        Amount(u)
    }

    pub const fn units(self) -> i64 {
        self.0
    }

    /// Refuses a negative amount where only costs and values may be given.
    pub fn check_not_negative(self, what: &'static str) -> Result<Self, RuleError> {
        if self.0 < 0 {
            return Err(RuleError::invalid(what, format!("{self} is negative")));
        }
        Ok(self)
    }

    pub fn from_whole(n: i64) -> Self {
        Amount(n.saturating_mul(UNIT))
    }

    pub fn saturating_add(self, o: Amount) -> Amount {
        Amount(self.0.saturating_add(o.0))
    }

    /// `self * n`, e.g. a per-transaction figure times a count.
    pub fn times(self, n: u64) -> Amount {
        Amount(self.0.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX)))
    }

    /// `self * num / den`, rounded half away from zero; `den` must be > 0.
    pub fn scaled(self, num: u64, den: u64) -> Amount {
        let v = i128::from(self.0) * i128::from(num);
        let d = i128::from(den.max(1));
        let q = (v + d / 2) / d;
        Amount(i64::try_from(q).unwrap_or(i64::MAX))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / UNIT as f64
    }
}

impl fmt::Display for Amount {
    /// At least two decimals, more only when they are not zero: `12.50`,
    /// `0.0025`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / UNIT as u64;
        let mut frac = format!("{:04}", abs % UNIT as u64);
        while frac.len() > 2 && frac.ends_with('0') {
            frac.pop();
        }
        write!(f, "{sign}{whole}.{frac}")
    }
}

impl FromStr for Amount {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        let bad = |why: &str| RuleError::invalid("amount", format!("{s:?}: {why}"));
        // A sign is accepted so computed figures (net) read back; inputs are
        // checked for it where they enter (claims, workflows).
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("write a decimal number such as 125.50"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) || (s.contains('.') && frac.is_empty()) {
            return Err(bad("write a decimal number such as 125.50"));
        }
        if frac.len() > SCALE as usize {
            return Err(bad("at most 4 decimal places"));
        }
        if whole.len() > 12 {
            return Err(bad("too large"));
        }
        let w: i64 = whole.parse().map_err(|_| bad("too large"))?;
        let mut f: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad("bad decimals"))?
        };
        for _ in frac.len()..SCALE as usize {
            f *= 10;
        }
        let units = w
            .checked_mul(UNIT)
            .and_then(|u| u.checked_add(f))
            .filter(|u| *u <= MAX_AMOUNT)
            .ok_or_else(|| bad("larger than 100000000"))?;
        Ok(Amount(if negative { -units } else { units }))
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An ISO 4217 alphabetic code: three uppercase ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "EUR"))]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn as_str(&self) -> &str {
        // Only ASCII uppercase letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        match s.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(RuleError::invalid(
                "currency",
                format!("{s:?} is not an ISO 4217 code such as EUR or USD"),
            )),
        }
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An amount in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount: Amount,
    pub currency: Currency,
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_parse_and_print_as_decimals() {
        for (text, units, shown) in [
            ("0", 0, "0.00"),
            ("12.5", 125_000, "12.50"),
            ("0.0025", 25, "0.0025"),
            ("100000000", MAX_AMOUNT, "100000000.00"),
            ("-1.25", -12_500, "-1.25"),
        ] {
            let a: Amount = text.parse().unwrap();
            assert_eq!(a.units(), units, "{text}");
            assert_eq!(a.to_string(), shown);
        }
    }

    #[test]
    fn malformed_amounts_are_refused() {
        for bad in [
            "",
            "-",
            "--1",
            "+1",
            "1.",
            ".5",
            "1.23456",
            "1e3",
            "1,5",
            " 1",
            "NaN",
            "100000000.0001",
            "9999999999999",
        ] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?} was accepted");
        }
        let negative: Amount = "-1".parse().unwrap();
        assert!(negative.check_not_negative("cost").is_err());
        assert!(Amount::ZERO.check_not_negative("cost").is_ok());
    }

    #[test]
    fn currencies_are_iso_shaped() {
        assert_eq!("EUR".parse::<Currency>().unwrap().as_str(), "EUR");
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(bad.parse::<Currency>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scaling_rounds_half_away() {
        assert_eq!(Amount::from_units(10).scaled(1, 4).units(), 3);
        assert_eq!(Amount::from_units(10).scaled(1, 3).units(), 3);
        assert_eq!(
            Amount::from_whole(60).scaled(30, 60),
            Amount::from_whole(30)
        );
    }

    proptest! {
        #[test]
        fn printing_round_trips(units in -MAX_AMOUNT..=MAX_AMOUNT) {
            let a = Amount::from_units(units);
            prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
        }
    }
}
