//! Durations, read and written one way: a whole number and a unit (`30s`,
//! `10m`, `1500ms`). Each place that takes one has its [`Syntax`]: which
//! units it knows, the unit of a bare number and how many digits it reads.
//! [`HAPROXY`] is routes.yaml's timers (the schema's pattern is generated
//! from it), [`parse_flag`] the command line's intervals, [`TTL`] and
//! [`DFP_SECONDS`] Docker Flow Proxy's parameters.

use std::time::Duration;

/// A unit written after the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Micros,
    Millis,
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl Unit {
    const ALL: [Unit; 6] = [
        Unit::Micros,
        Unit::Millis,
        Unit::Seconds,
        Unit::Minutes,
        Unit::Hours,
        Unit::Days,
    ];

    /// How the unit is written: `us`, `ms`, `s`, `m`, `h`, `d`.
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Micros => "us",
            Unit::Millis => "ms",
            Unit::Seconds => "s",
            Unit::Minutes => "m",
            Unit::Hours => "h",
            Unit::Days => "d",
        }
    }

    /// `count` of this unit; `None` when a `Duration` cannot hold it.
    fn times(self, count: u64) -> Option<Duration> {
        let seconds = |per: u64| count.checked_mul(per).map(Duration::from_secs);
        match self {
            Unit::Micros => Some(Duration::from_micros(count)),
            Unit::Millis => Some(Duration::from_millis(count)),
            Unit::Seconds => Some(Duration::from_secs(count)),
            Unit::Minutes => seconds(60),
            Unit::Hours => seconds(3600),
            Unit::Days => seconds(86_400),
        }
    }
}

/// How one place writes durations.
#[derive(Debug)]
pub struct Syntax {
    /// The units that may follow the number.
    units: &'static [Unit],
    /// The unit of a number written alone.
    bare: Unit,
    /// The most digits the number may have.
    max_digits: usize,
}

/// HAProxy's timers as routes.yaml writes them: up to 9 digits, any unit,
/// milliseconds when none is written.
pub const HAPROXY: Syntax = Syntax {
    units: &Unit::ALL,
    bare: Unit::Millis,
    max_digits: 9,
};

/// The longest timer HAProxy accepts: 2^31-1 ms, about 24.8 days.
pub const HAPROXY_MAX: Duration = Duration::from_millis(i32::MAX as u64);

/// Command-line intervals (`--poll-interval 30s`): a bare number is seconds.
const FLAG: Syntax = Syntax {
    units: &[Unit::Millis, Unit::Seconds, Unit::Minutes, Unit::Hours],
    bare: Unit::Seconds,
    max_digits: usize::MAX,
};

/// capstan's `ttl` parameter: seconds, or a number with `s`, `m`, `h` or `d`.
pub const TTL: Syntax = Syntax {
    units: &[Unit::Seconds, Unit::Minutes, Unit::Hours, Unit::Days],
    bare: Unit::Seconds,
    max_digits: 9,
};

/// Docker Flow Proxy's timeouts: whole seconds, no unit.
pub const DFP_SECONDS: Syntax = Syntax {
    units: &[],
    bare: Unit::Seconds,
    max_digits: 9,
};

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No number, too many digits, or longer than a `Duration` holds.
    #[error("`{text}` is not a duration like 30s")]
    NotADuration { text: String },
    /// A unit this syntax does not know.
    #[error("`{text}`: unknown unit `{unit}` (use {})", listed(.units))]
    UnknownUnit {
        text: String,
        unit: String,
        units: &'static [Unit],
    },
}

/// `ms, s, m or h`.
fn listed(units: &[Unit]) -> String {
    let suffixes: Vec<&str> = units.iter().map(|u| u.suffix()).collect();
    match suffixes.split_last() {
        None => "no unit".to_string(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

impl Syntax {
    /// Reads `text`: digits, then one of the syntax's units or none.
    pub fn parse(&self, text: &str) -> Result<Duration, DurationError> {
        let not_a_duration = || DurationError::NotADuration {
            text: text.to_string(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, suffix) = text.split_at(split);
        if digits.len() > self.max_digits {
            return Err(not_a_duration());
        }
        let count: u64 = digits.parse().map_err(|_| not_a_duration())?;
        let unit = if suffix.is_empty() {
            self.bare
        } else {
            *self
                .units
                .iter()
                .find(|u| u.suffix() == suffix)
                .ok_or_else(|| DurationError::UnknownUnit {
                    text: text.to_string(),
                    unit: suffix.to_string(),
                    units: self.units,
                })?
        };
        unit.times(count).ok_or_else(not_a_duration)
    }

    /// The syntax as a regular expression, for the JSON schema:
    /// `^[0-9]{1,9}(us|ms|s|m|h|d)?$`.
    pub fn pattern(&self) -> String {
        let units: Vec<&str> = self.units.iter().map(|u| u.suffix()).collect();
        format!("^[0-9]{{1,{}}}({})?$", self.max_digits, units.join("|"))
    }
}

/// A command-line interval: `500ms`, `30s`, `5m`, `1h`; a bare number is seconds.
pub fn parse_flag(text: &str) -> Result<Duration, DurationError> {
    FLAG.parse(text)
}

/// `duration` as a number of `unit`s, when it is a whole number of them.
pub fn whole(duration: Duration, unit: Unit) -> Option<u64> {
    let one = unit.times(1)?.as_nanos();
    let nanos = duration.as_nanos();
    if nanos.is_multiple_of(one) {
        u64::try_from(nanos / one).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_timers_default_to_milliseconds() {
        let parse = |t| HAPROXY.parse(t);
        assert_eq!(parse("5000"), Ok(Duration::from_millis(5000)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse("999999999d"),
            Ok(Duration::from_secs(999_999_999 * 86_400))
        );
        assert!(parse("1234567890").is_err());
        assert!(parse("1.5s").is_err());
        assert!(parse("s").is_err());
        assert!(parse("").is_err());
        assert_eq!(HAPROXY.pattern(), "^[0-9]{1,9}(us|ms|s|m|h|d)?$");
    }

    #[test]
    fn flags_read_seconds_and_say_which_units_exist() {
        assert_eq!(FLAG.parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(FLAG.parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(FLAG.parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            FLAG.parse("1d").unwrap_err().to_string(),
            "`1d`: unknown unit `d` (use ms, s, m or h)"
        );
        assert_eq!(
            FLAG.parse("soon").unwrap_err().to_string(),
            "`soon` is not a duration like 30s"
        );
        // Too long to hold is not a duration either (not an overflow).
        assert!(FLAG.parse("99999999999999999h").is_err());
    }

    #[test]
    fn dfp_syntaxes() {
        assert_eq!(TTL.parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(TTL.parse("3600"), Ok(Duration::from_secs(3600)));
        assert!(TTL.parse("10ms").is_err());
        assert!(TTL.parse("9999999999").is_err());
        assert_eq!(DFP_SECONDS.parse("60"), Ok(Duration::from_secs(60)));
        assert!(DFP_SECONDS.parse("1m").is_err());
    }

    #[test]
    fn whole_units() {
        assert_eq!(whole(Duration::from_secs(120), Unit::Seconds), Some(120));
        assert_eq!(whole(Duration::from_millis(1500), Unit::Seconds), None);
        assert_eq!(whole(Duration::from_secs(120), Unit::Minutes), Some(2));
    }
}
