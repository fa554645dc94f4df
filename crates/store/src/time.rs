//! RFC 3339 timestamps (`2026-11-30T05:16:09Z`), as Kubernetes writes them, without a calendar
//! dependency.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The current time in RFC 3339.
pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        rest = &frac[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let hh: i64 = rest.get(1..3)?.parse().ok()?;
            let mm: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (hh * 3600 + mm * 60)
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    (secs >= 0).then(|| UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// kubectl's AGE: `42s`, `5m10s`, `3h4m`, `2d5h`, `400d`.
pub fn age(since: SystemTime, now: SystemTime) -> String {
    let s = now.duration_since(since).unwrap_or_default().as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=599 => format!("{}m{}s", s / 60, s % 60).replace("m0s", "m"),
        600..=10_799 => format!("{}m", s / 60),
        10_800..=28_799 => format!("{}h{}m", s / 3600, s % 3600 / 60).replace("h0m", "h"),
        28_800..=172_799 => format!("{}h", s / 3600),
        172_800..=691_199 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600).replace("d0h", "d"),
        _ => format!("{}d", s / 86_400),
    }
}

// Howard Hinnant's days/civil conversions.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ages() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_008_420);
        let s = rfc3339(t);
        assert_eq!(s, "2026-11-30T03:13:40Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(parse_rfc3339("2026-11-30T05:13:40.123+02:00"), Some(t));
        assert_eq!(age(t, t + Duration::from_secs(142)), "2m22s");
        assert_eq!(age(t, t + Duration::from_secs(32 * 60)), "32m");
        assert_eq!(age(t, t + Duration::from_secs(45)), "45s");
        assert_eq!(age(t, t + Duration::from_secs(3 * 86_400 + 3600)), "3d1h");
    }
}
