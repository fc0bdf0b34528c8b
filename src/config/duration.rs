//! The config's duration type: an integer and one unit (`1500ms`, `10s`, `2m`, `1h`, `30d`).

use std::fmt;
use std::str::FromStr;

const NANOS_PER_MS: u64 = 1_000_000;
const NANOS_PER_S: u64 = 1_000 * NANOS_PER_MS;
const NANOS_PER_M: u64 = 60 * NANOS_PER_S;
const NANOS_PER_H: u64 = 60 * NANOS_PER_M;
const NANOS_PER_D: u64 = 24 * NANOS_PER_H;

/// Units from the largest down: `Display` picks the first that divides exactly, so a value
/// prints the way a person would write it and parses back to itself.
const UNITS: [(&str, u64); 5] = [
    ("d", NANOS_PER_D),
    ("h", NANOS_PER_H),
    ("m", NANOS_PER_M),
    ("s", NANOS_PER_S),
    ("ms", NANOS_PER_MS),
];

/// A non-negative span of time as written in the config, kept in nanoseconds so event-time
/// arithmetic (OTLP timestamps are Unix nanoseconds) needs no conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

/// Why a duration string was refused; its `Display` is the message users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?} (use ms, s, m, h or d)")]
pub struct ParseDurationError(pub String);

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);

    /// `n` milliseconds.
    pub const fn from_millis(n: u64) -> Duration {
        Duration(n.saturating_mul(NANOS_PER_MS))
    }

    /// `n` seconds.
    pub const fn from_secs(n: u64) -> Duration {
        Duration(n.saturating_mul(NANOS_PER_S))
    }

    /// `n` minutes.
    pub const fn from_mins(n: u64) -> Duration {
        Duration(n.saturating_mul(NANOS_PER_M))
    }

    /// `n` hours.
    pub const fn from_hours(n: u64) -> Duration {
        Duration(n.saturating_mul(NANOS_PER_H))
    }

    /// `n` days of 24 hours.
    pub const fn from_days(n: u64) -> Duration {
        Duration(n.saturating_mul(NANOS_PER_D))
    }

    /// Whole nanoseconds.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole milliseconds (config durations never carry a finer part).
    pub const fn as_millis(self) -> u64 {
        self.0 / NANOS_PER_MS
    }

    /// Seconds as a float, for rates and Prometheus values.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_S as f64
    }

    /// True for `0s`.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// True when `self` is a whole, non-zero number of `unit`s (`unit` zero: false).
    pub const fn is_multiple_of(self, unit: Duration) -> bool {
        unit.0 != 0 && self.0 != 0 && self.0 % unit.0 == 0
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Duration, ParseDurationError> {
        let err = || ParseDurationError(text.to_string());
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        if number.is_empty() {
            return Err(err());
        }
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(err)?;
        let n: u64 = number.parse().map_err(|_| err())?;
        n.checked_mul(scale).map(Duration).ok_or_else(err)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        for (name, scale) in UNITS {
            if self.0 % scale == 0 {
                return write!(f, "{}{}", self.0 / scale, name);
            }
        }
        // Unreachable from parsed values (all whole milliseconds); keep it exact anyway.
        write!(f, "{}ms", self.as_secs_f64() * 1e3)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> std::time::Duration {
        std::time::Duration::from_nanos(d.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!("1500ms".parse(), Ok(Duration::from_millis(1500)));
        assert_eq!("10s".parse(), Ok(Duration::from_secs(10)));
        assert_eq!("2m".parse(), Ok(Duration::from_secs(120)));
        assert_eq!("1h".parse(), Ok(Duration::from_secs(3600)));
        assert_eq!("30d".parse(), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!("0s".parse(), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bare_numbers_negatives_unknown_units_and_overflow() {
        for bad in [
            "",
            "10",
            "-1s",
            "+1s",
            "1.5s",
            "10 s",
            " 10s",
            "10S",
            "1w",
            "3x",
            "s",
            "1h30m",
            "99999999999d",
        ] {
            assert_eq!(
                bad.parse::<Duration>(),
                Err(ParseDurationError(bad.to_string())),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn error_message_names_the_units() {
        let err = "3x".parse::<Duration>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid duration "3x" (use ms, s, m, h or d)"#
        );
    }

    #[test]
    fn display_uses_the_largest_exact_unit_and_round_trips() {
        let cases = [
            ("1500ms", "1500ms"),
            ("1000ms", "1s"),
            ("90s", "90s"),
            ("60s", "1m"),
            ("120m", "2h"),
            ("48h", "2d"),
            ("30d", "30d"),
            ("0ms", "0s"),
        ];
        for (input, shown) in cases {
            let d: Duration = input.parse().unwrap();
            assert_eq!(d.to_string(), shown);
            assert_eq!(shown.parse::<Duration>(), Ok(d));
        }
    }

    #[test]
    fn conversions() {
        let d = Duration::from_millis(1500);
        assert_eq!(d.as_nanos(), 1_500_000_000);
        assert_eq!(d.as_millis(), 1500);
        assert_eq!(d.as_secs_f64(), 1.5);
        assert_eq!(
            std::time::Duration::from(d),
            std::time::Duration::from_millis(1500)
        );
    }

    #[test]
    fn multiples() {
        let m = Duration::from_mins(1);
        assert!(Duration::from_mins(5).is_multiple_of(m));
        assert!(!Duration::from_secs(90).is_multiple_of(m));
        assert!(!Duration::ZERO.is_multiple_of(m));
        assert!(!m.is_multiple_of(Duration::ZERO));
    }
}
