//! A syntax check of five-field cron expressions, so that a typo in `[schedule]` is
//! reported when the file is read rather than when the first run never happens.

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

/// Checks that `expression` has five fields, each a comma-separated list of `*`,
/// `N` or `N-M`, optionally followed by `/STEP`, with every number in range.
pub(crate) fn check(expression: &str) -> Result<(), String> {
    let parts: Vec<&str> = expression.split_whitespace().collect();
    if parts.len() != FIELDS.len() {
        return Err(format!("a cron expression has 5 fields, this one has {}; {HINT}", parts.len()));
    }
    for (part, field) in parts.iter().zip(&FIELDS) {
        check_field(part, field).map_err(|problem| format!("{} field `{part}`: {problem}; {HINT}", field.name))?;
    }
    Ok(())
}

fn check_field(part: &str, field: &Field) -> Result<(), String> {
    for item in part.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(step) if step >= 1 => {}
                _ => return Err(format!("`{step}` is not a step; write a number from 1")),
            }
        }
        if base == "*" {
            continue;
        }
        match base.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (value(from, field)?, value(to, field)?);
                if from > to {
                    return Err(format!("the range `{base}` runs backwards"));
                }
            }
            None => {
                value(base, field)?;
            }
        }
    }
    Ok(())
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
    use super::check;

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
    }
}
