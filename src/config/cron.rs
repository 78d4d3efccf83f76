//! Five-field cron expressions: checked when the file is read, so that a typo in
//! `[schedule]` is reported then rather than when the first run never happens, and
//! evaluated by `envsnap schedule run` to find the run that is due.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

/// One field of a cron expression: its name, its range, and the names it accepts
/// (the first name stands for the lowest value).
struct Field {
    name: &'static str,
    low: u32,
    high: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field { name: "minute", low: 0, high: 59, names: &[] },
    Field { name: "hour", low: 0, high: 23, names: &[] },
    Field { name: "day of month", low: 1, high: 31, names: &[] },
    Field {
        name: "month",
        low: 1,
        high: 12,
        names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    },
    // 0 and 7 are both Sunday, as in Vixie cron.
    Field { name: "day of week", low: 0, high: 7, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] },
];

/// The hint every cron error ends with.
const HINT: &str = "write 5 fields: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\"";

/// A five-field cron expression, parsed: each field as the set of values it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    /// Bit N set: value N matches (minutes 0–59, hours 0–23, days 1–31, months 1–12,
    /// weekdays 0–6 with Sunday 0).
    fields: [u64; 5],
    /// Whether day of month, and day of week, were `*`: as in Vixie cron, when both
    /// are restricted a day matches if either does.
    any_day: bool,
    any_weekday: bool,
}

/// How far back [`Cron::latest`] looks: long enough for `0 0 29 2 *` across a
/// century year that is not a leap year.
const SEARCH_DAYS: i64 = 366 * 9;

impl Cron {
    /// Parses `expression`: five fields, each a comma-separated list of `*`, `N` or
    /// `N-M`, optionally followed by `/STEP`, with every number in range.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let parts: Vec<&str> = expression.split_whitespace().collect();
        if parts.len() != FIELDS.len() {
            return Err(format!("a cron expression has 5 fields, this one has {}; {HINT}", parts.len()));
        }
        let mut fields = [0; 5];
        for ((part, field), bits) in parts.iter().zip(&FIELDS).zip(&mut fields) {
            *bits = parse_field(part, field)
                .map_err(|problem| format!("{} field `{part}`: {problem}; {HINT}", field.name))?;
        }
        // Sunday is 0 or 7.
        if fields[4] & (1 << 7) != 0 {
            fields[4] = (fields[4] | 1) & !(1 << 7);
        }
        // As in Vixie cron, a field that starts with `*` (`*`, `*/2`) leaves the day
        // to the other field.
        let cron = Cron {
            text: parts.join(" "),
            fields,
            any_day: parts[2].starts_with('*'),
            any_weekday: parts[4].starts_with('*'),
        };
        // A day that never comes (31 February) would make every run find nothing due,
        // silently, for ever. Nine years from a leap year hold every day there is.
        let leap_year_end = NaiveDate::from_ymd_opt(2400, 12, 31).and_then(|date| date.and_hms_opt(23, 59, 0));
        if leap_year_end.is_some_and(|end| cron.latest(end).is_none()) {
            return Err(format!(
                "`{}` names no day that exists (day {} of month {} never comes); {HINT}",
                cron.text, parts[2], parts[3]
            ));
        }
        Ok(cron)
    }

    /// The expression, its fields separated by one space.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The latest minute at or before `at` that the expression matches, if any in the
    /// last nine years. Times are wall-clock times, as cron reads them.
    pub fn latest(&self, at: NaiveDateTime) -> Option<NaiveDateTime> {
        let [minutes, hours, ..] = self.fields;
        let mut date = at.date();
        for back in 0..SEARCH_DAYS {
            if back > 0 {
                date = date.pred_opt()?;
            }
            if !self.matches_day(date) {
                continue;
            }
            let (last_hour, last_minute) = if back == 0 { (at.hour(), Some(at.minute())) } else { (23, None) };
            for hour in (0..=last_hour).rev().filter(|hour| hours & (1 << hour) != 0) {
                let up_to = if hour == last_hour { last_minute.unwrap_or(59) } else { 59 };
                if let Some(minute) = (0..=up_to).rev().find(|minute| minutes & (1 << minute) != 0) {
                    return date.and_hms_opt(hour, minute, 0);
                }
            }
        }
        None
    }

    fn matches_day(&self, date: NaiveDate) -> bool {
        let [_, _, days, months, weekdays] = self.fields;
        if months & (1 << date.month()) == 0 {
            return false;
        }
        let day = days & (1 << date.day()) != 0;
        let weekday = weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.any_day, self.any_weekday) {
            (false, false) => day || weekday,
            _ => day && weekday,
        }
    }
}

/// The values one field matches, as bits.
fn parse_field(part: &str, field: &Field) -> Result<u64, String> {
    let mut bits = 0;
    for item in part.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let step = match step.map(str::parse::<u32>) {
            None => 1,
            Some(Ok(step)) if step >= 1 => step,
            Some(_) => return Err(format!("`{}` is not a step; write a number from 1", step.unwrap_or_default())),
        };
        let (from, to) = match base.split_once('-') {
            _ if base == "*" => (field.low, field.high),
            Some((from, to)) => (value(from, field)?, value(to, field)?),
            // `N/STEP` runs from N to the end of the range, as in Vixie cron.
            None => {
                let from = value(base, field)?;
                (from, if step > 1 { field.high } else { from })
            }
        };
        if from > to {
            return Err(format!("the range `{base}` runs backwards"));
        }
        for value in (from..=to).step_by(step as usize) {
            bits |= 1 << value;
        }
    }
    Ok(bits)
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    if let Some(position) = field.names.iter().position(|name| name.eq_ignore_ascii_case(text)) {
        let offset = u32::try_from(position).map_err(|_| format!("`{text}` is out of range"))?;
        return Ok(field.low + offset);
    }
    match text.parse::<u32>() {
        Ok(number) if (field.low..=field.high).contains(&number) => Ok(number),
        Ok(_) => Err(format!("`{text}` is out of range {}-{}", field.low, field.high)),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::Cron;

    fn check(expression: &str) -> Result<(), String> {
        Cron::parse(expression).map(drop)
    }

    #[test]
    fn accepts_common_expressions() {
        for expression in
            ["0 3 * * *", "*/15 * * * *", "0 0-6/2 1,15 * mon-fri", "30 2 * JAN,jul 0", "0 0 * * 7", "  5   4 * * *  "]
        {
            assert_eq!(check(expression), Ok(()), "{expression}");
        }
    }

    #[test]
    fn rejects_mistakes_naming_the_field() {
        assert_eq!(
            check("0 25 * * *"),
            Err("hour field `25`: `25` is out of range 0-23; write 5 fields: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\"".to_owned())
        );
        assert!(check("@daily").is_err());
        assert!(check("0 3 * *").is_err());
        assert!(check("0 3 * * * *").is_err());
        assert!(check("*/0 * * * *").is_err());
        assert!(check("0 5-2 * * *").is_err());
        assert!(check("0 3 0 * *").is_err());
        assert!(check("0 3 * foo *").is_err());
        let never = check("0 3 31 2 *").expect_err("31 February never comes");
        assert!(never.contains("names no day that exists"), "{never}");
        assert!(check("0 3 30 2,4 *").is_ok(), "30 April comes");
        assert!(check("0 0 29 2 *").is_ok(), "29 February comes in leap years");
    }

    #[test]
    fn a_day_field_that_starts_with_a_star_leaves_the_day_to_the_other() {
        // `*/2` in day of month counts as a star, as in Vixie cron: both fields must
        // match, so Mondays that are odd days, not every odd day and every Monday.
        // Tuesday 2026-12-01 is an odd day; Monday 2026-11-30 an even one.
        assert_eq!(latest("0 3 */2 * 1", "2026-12-01 04:00").as_deref(), Some("2026-11-23 03:00 Mon"));
        assert_eq!(latest("0 3 1 * */2", "2026-12-02 04:00").as_deref(), Some("2026-12-01 03:00 Tue"));
    }

    fn latest(expression: &str, at: &str) -> Option<String> {
        let cron = Cron::parse(expression).ok()?;
        let at = chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M").ok()?;
        cron.latest(at).map(|time| time.format("%Y-%m-%d %H:%M %a").to_string())
    }

    #[test]
    fn latest_finds_the_run_at_or_before_a_time() {
        // Friday 2026-11-20.
        assert_eq!(latest("0 3 * * *", "2026-11-20 03:00").as_deref(), Some("2026-11-20 03:00 Fri"));
        assert_eq!(latest("0 3 * * *", "2026-11-20 02:59").as_deref(), Some("2026-11-19 03:00 Thu"));
        assert_eq!(latest("*/15 * * * *", "2026-11-20 12:44").as_deref(), Some("2026-11-20 12:30 Fri"));
        assert_eq!(latest("0 */6 * * *", "2026-11-20 05:00").as_deref(), Some("2026-11-20 00:00 Fri"));
        assert_eq!(latest("30 2 * * mon-fri", "2026-11-23 01:00").as_deref(), Some("2026-11-20 02:30 Fri"));
        assert_eq!(latest("0 0 * * 7", "2026-11-20 12:00").as_deref(), Some("2026-11-15 00:00 Sun"));
        assert_eq!(latest("0 4 1 jan *", "2026-11-20 12:00").as_deref(), Some("2026-01-01 04:00 Thu"));
        // `5/20` is 5, 25, 45.
        assert_eq!(latest("5/20 * * * *", "2026-11-20 12:44").as_deref(), Some("2026-11-20 12:25 Fri"));
        // Day of month and day of week both restricted: either matches.
        assert_eq!(latest("0 0 13 * fri", "2026-11-19 00:00").as_deref(), Some("2026-11-13 00:00 Fri"));
        assert_eq!(latest("0 0 1 * fri", "2026-11-05 00:00").as_deref(), Some("2026-11-01 00:00 Sun"));
        // 29 February comes back after 2100, which is not a leap year.
        assert_eq!(latest("0 0 29 2 *", "2103-12-31 00:00").as_deref(), Some("2096-02-29 00:00 Wed"));
    }
}
