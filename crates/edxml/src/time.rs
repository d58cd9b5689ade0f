//! edXML's times: `yyyy/MM/dd` dates and `yyyy/MM/dd HH:mm:ss` timestamps,
//! in Vietnam's time (UTC+7, no daylight saving), as document systems
//! write them.

/// Vietnam's offset from UTC, seconds.
const OFFSET: i64 = 7 * 3600;

/// Days since 1970-01-01 of an ISO `YYYY-MM-DD`, if it is a real date.
pub fn civil_days(iso: &str) -> Option<i64> {
    let mut parts = iso.split('-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || iso.len() != 10 || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let length = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day > length[month as usize - 1] {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `yyyy/MM/dd HH:mm:ss` (Vietnam time) → Unix milliseconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let (date, clock) = text.trim().split_once(' ')?;
    let days = civil_days(&date.replace('/', "-"))?;
    let mut parts = clock.split(':');
    let hour: i64 = parts.next()?.parse().ok()?;
    let minute: i64 = parts.next()?.parse().ok()?;
    let second: i64 = parts.next().map_or(Some(0), |s| s.parse().ok())?;
    if parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some((days * 86_400 + hour * 3600 + minute * 60 + second - OFFSET) * 1000)
}

/// Unix milliseconds → `yyyy/MM/dd HH:mm:ss` in Vietnam time.
pub fn format_timestamp(millis: i64) -> String {
    let seconds = millis.div_euclid(1000) + OFFSET;
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let rest = seconds.rem_euclid(86_400);
    format!(
        "{year:04}/{month:02}/{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `YYYY-MM-DD` → `yyyy/MM/dd`; anything else as it is.
pub fn edxml_date(iso: &str) -> String {
    if civil_days(iso).is_some() {
        iso.replace('-', "/")
    } else {
        iso.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_in_vietnam_time() {
        let at = parse_timestamp("2026/12/02 08:30:05").unwrap();
        assert_eq!(at, 1_796_175_005_000);
        assert_eq!(format_timestamp(at), "2026/12/02 08:30:05");
        assert_eq!(parse_timestamp("2026/02/30 08:30:05"), None);
        assert_eq!(civil_days("2000-02-29"), Some(11_016));
        assert_eq!(edxml_date("2026-12-02"), "2026/12/02");
    }
}
