//! Event-time values: RFC 3339 parsing and formatting in milliseconds, without a date library.
//!
//! Timestamps are parsed once per event on the hot path, so the common shape
//! (`2026-01-01T12:00:00.123Z`, any offset, 0–9 fraction digits) is parsed by hand.

/// Milliseconds in one day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Parses an RFC 3339 timestamp (`2026-01-01T12:00:00.5+01:00`; `T` or space; a bare date
/// `2026-01-01` means midnight UTC) into milliseconds since the epoch. Sub-millisecond digits
/// are truncated.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let fail = || format!("`{text}` is not an RFC 3339 timestamp (like 2026-01-01T12:00:00Z)");
    let b = text.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(fail());
    }
    let year = digits(b, 0, 4).ok_or_else(fail)? as i64;
    let month = digits(b, 5, 2).ok_or_else(fail)?;
    let day = digits(b, 8, 2).ok_or_else(fail)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(format!("`{text}`: no such date"));
    }
    let date_ms = days_from_civil(year, month, day) * MS_PER_DAY;
    if b.len() == 10 {
        return Ok(date_ms);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return Err(fail());
    }
    let hour = digits(b, 11, 2).ok_or_else(fail)?;
    let minute = digits(b, 14, 2).ok_or_else(fail)?;
    // A leap second (:60) is folded onto :59.999, as most systems do.
    let second = digits(b, 17, 2).ok_or_else(fail)?.min(60);
    if hour > 23 || minute > 59 {
        return Err(format!("`{text}`: no such time of day"));
    }
    let mut at = 19;
    let mut millis = 0i64;
    if b.get(at) == Some(&b'.') || b.get(at) == Some(&b',') {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            if at - start < 3 {
                millis = millis * 10 + (b[at] - b'0') as i64;
            }
            at += 1;
        }
        if at == start {
            return Err(fail());
        }
        for _ in (at - start)..3 {
            millis *= 10;
        }
    }
    let offset_ms = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == at + 6 && b[at + 3] == b':' => {
            let oh = digits(b, at + 1, 2).ok_or_else(fail)? as i64;
            let om = digits(b, at + 4, 2).ok_or_else(fail)? as i64;
            let off = (oh * 60 + om) * 60_000;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        // No offset: read as UTC, like most event producers mean it.
        None => 0,
        _ => return Err(fail()),
    };
    let (second, millis) = if second == 60 {
        (59, 999)
    } else {
        (second, millis)
    };
    let time_ms = ((hour as i64 * 60 + minute as i64) * 60 + second as i64) * 1000 + millis;
    Ok(date_ms + time_ms - offset_ms)
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339(ms, &mut out);
    out
}

/// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ` to `out` (years outside 0..=9999 as `±YYYYYY`).
pub fn write_rfc3339(ms: i64, out: &mut String) {
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        use std::fmt::Write;
        let _ = write!(out, "{y:+07}");
    } else {
        push_digits(out, y as u32, 4);
    }
    let (h, rest) = (in_day / 3_600_000, in_day % 3_600_000);
    let (min, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    out.push('-');
    push_digits(out, m, 2);
    out.push('-');
    push_digits(out, d, 2);
    out.push('T');
    push_digits(out, h as u32, 2);
    out.push(':');
    push_digits(out, min as u32, 2);
    out.push(':');
    push_digits(out, s as u32, 2);
    out.push('.');
    push_digits(out, milli as u32, 3);
    out.push('Z');
}

/// Appends `v` zero-padded to `width` digits.
#[inline]
fn push_digits(out: &mut String, mut v: u32, width: usize) {
    let mut buf = [b'0'; 10];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.push_str(std::str::from_utf8(&buf[..width]).expect("ASCII digits"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_shapes() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(parse_rfc3339("1970-01-01 00:00:00.123456789Z"), Ok(123));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_rfc3339("1969-12-31T23:00:00-01:00"), Ok(0));
        assert_eq!(parse_rfc3339("2026-01-01"), Ok(1_767_225_600_000));
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00"), Ok(1_767_225_600_000));
    }

    #[test]
    fn rejects_garbage_with_the_input_in_the_message() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
        ] {
            let err = parse_rfc3339(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for ms in [
            0,
            1,
            -1,
            1_767_225_600_123,
            -62_135_596_800_000,
            253_402_300_799_999,
        ] {
            assert_eq!(
                parse_rfc3339(&format_rfc3339(ms)),
                Ok(ms),
                "{}",
                format_rfc3339(ms)
            );
        }
        assert_eq!(
            format_rfc3339(1_767_225_600_123),
            "2026-01-01T00:00:00.123Z"
        );
    }

    #[test]
    fn civil_round_trip_over_four_centuries() {
        let mut day = days_from_civil(1900, 1, 1);
        while day < days_from_civil(2300, 1, 1) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
            day += 1;
        }
    }
}
