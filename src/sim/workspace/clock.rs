//! Logical time and ISO-8601 dates.
//!
//! The simulation never reads the real clock: timestamps are Unix seconds on a logical clock that starts
//! at [`SEED_EPOCH`], is spread over a few weeks by seeding, then moves one second per mutation. Dates are
//! converted with the days-from-civil algorithm (proleptic Gregorian, UTC) so no time crate is needed.

/// Unix seconds, UTC.
pub(super) type Timestamp = i64;

/// 2024-01-01T00:00:00Z: where the seeded history begins.
pub(super) const SEED_EPOCH: Timestamp = 1_704_067_200;

pub(super) const DAY: Timestamp = 86_400;

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `2024-01-01T09:30:00.000Z`, the form Asana uses for `created_at` and friends.
pub(super) fn format_datetime(t: Timestamp) -> String {
    let secs = t.rem_euclid(DAY);
    format!(
        "{}T{:02}:{:02}:{:02}.000Z",
        format_date(t),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `2024-01-01`, the form of `due_on`.
pub(super) fn format_date(t: Timestamp) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

fn number(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a strict `YYYY-MM-DD` and returns its midnight (UTC).
pub(super) fn parse_date(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (number(&s[0..4])?, number(&s[5..7])?, number(&s[8..10])?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * DAY)
}

/// Parses a date or a date-time: `YYYY-MM-DD`, optionally followed by `T` (or a space) and `HH:MM`,
/// `:SS`, a fraction, and `Z` or a `±HH:MM` / `±HHMM` offset (no offset means UTC).
pub(super) fn parse_datetime(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let date = parse_date(s.get(..10)?)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(date);
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(split);
    let mut parts = time.splitn(3, ':');
    let hours = number(parts.next()?)?;
    let minutes = number(parts.next()?)?;
    let seconds = match parts.next() {
        Some(sec) => {
            let whole = sec.split('.').next()?;
            let fraction = &sec[whole.len()..];
            if !(fraction.is_empty() || fraction.len() > 1 && number(&fraction[1..]).is_some()) {
                return None;
            }
            number(whole)?
        }
        None => 0,
    };
    if hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits = zone[1..].replace(':', "");
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (h, m) = (number(&digits[..2])?, number(&digits[2..])?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    Some(date + hours * 3600 + minutes * 60 + seconds - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dates_and_times() {
        assert_eq!(format_datetime(SEED_EPOCH), "2024-01-01T00:00:00.000Z");
        assert_eq!(
            parse_date("2024-02-29").map(format_date).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("24-01-01"), None);
        let t = parse_datetime("2024-03-10T12:34:56.789Z");
        assert_eq!(
            t.map(format_datetime).as_deref(),
            Some("2024-03-10T12:34:56.000Z")
        );
        assert_eq!(
            parse_datetime("2024-03-10T12:00:00+02:00"),
            parse_datetime("2024-03-10T10:00Z")
        );
        assert_eq!(parse_datetime("2024-03-10"), parse_date("2024-03-10"));
        for bad in [
            "",
            "2024-03-10T",
            "2024-03-10T25:00",
            "2024-03-10T10:00+2",
            "2024-03-10x",
            "é",
            "2024-03-10T10:00+1é1",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }
}
