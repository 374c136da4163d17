//! Spark's REST dates, `2026-11-21T10:53:24.123GMT` (`JacksonMessageWriter`'s format, always
//! GMT), read and written as epoch milliseconds.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time as Spark's REST API writes it; epoch milliseconds inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SparkDate(pub i64);

impl SparkDate {
    /// Reads `2026-11-21T10:53:24.123GMT`; `None` for anything else.
    pub fn parse(s: &str) -> Option<SparkDate> {
        let s = s.strip_suffix("GMT")?;
        let (date, time) = s.split_once('T')?;
        let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
        let (y, m, day) = (d.next()??, d.next()??, d.next()??);
        let (hms, millis) = time.split_once('.')?;
        let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
        let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
        let millis: i64 = millis.parse().ok()?;
        if !(1..=12).contains(&m)
            || !(1..=31).contains(&day)
            || !(0..=23).contains(&h)
            || !(0..=59).contains(&min)
            || !(0..=60).contains(&sec)
            || !(0..=999).contains(&millis)
            || !(-9999..=9999).contains(&y)
        {
            return None;
        }
        let days = days_from_civil(y, m, day);
        Some(SparkDate(
            ((days * 24 + h) * 60 + min) * 60_000 + sec * 1000 + millis,
        ))
    }
}

impl std::fmt::Display for SparkDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0;
        let secs = ms.div_euclid(1000);
        let millis = ms.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}GMT",
            sod / 3600,
            (sod % 3600) / 60,
            sod % 60
        )
    }
}

impl Serialize for SparkDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SparkDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        SparkDate::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a Spark REST date: {s:?}")))
    }
}

/// For `Option<SparkDate>` fields of what Spark sends: a date in another format is left out
/// rather than failing the whole answer.
pub fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SparkDate>, D::Error> {
    let s = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?;
    Ok(s.as_deref().and_then(SparkDate::parse))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (the inverse of [`days_from_civil`]).
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

#[cfg(test)]
mod tests {
    use super::SparkDate;

    #[test]
    fn spark_dates_read_and_write_alike() {
        for (text, ms) in [
            ("1970-01-01T00:00:00.000GMT", 0),
            ("2026-11-21T10:53:24.123GMT", 1_795_258_404_123),
            ("2000-02-29T00:00:00.000GMT", 951_782_400_000),
            ("1969-12-31T23:59:59.999GMT", -1),
        ] {
            assert_eq!(SparkDate::parse(text), Some(SparkDate(ms)), "{text}");
            assert_eq!(SparkDate(ms).to_string(), text);
        }
        assert_eq!(SparkDate::parse("2026-13-01T00:00:00.000GMT"), None);
        assert_eq!(SparkDate::parse("yesterday"), None);
        assert_eq!(SparkDate::parse("2026-11-21T10:53:24GMT"), None);
        assert_eq!(
            serde_json::to_string(&SparkDate(1_795_258_404_123)).expect("json"),
            "\"2026-11-21T10:53:24.123GMT\""
        );
        assert!(serde_json::from_str::<SparkDate>("\"soon\"").is_err());
    }

    #[test]
    fn every_millisecond_of_a_wide_range_survives_a_round_trip() {
        let mut ms = -86_400_000 * 365 * 300;
        while ms < 86_400_000 * 365 * 300 {
            let text = SparkDate(ms).to_string();
            assert_eq!(SparkDate::parse(&text), Some(SparkDate(ms)), "{text}");
            ms += 7_919_999_937;
        }
    }
}
