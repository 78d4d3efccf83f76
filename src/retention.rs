//! Retention: which snapshots a policy keeps, and why.
//!
//! [`plan`] is a pure function of the snapshots, the [`Policy`] and the current time
//! (given, never read from the clock, so a plan can be tested and previewed). It
//! returns one [`Decision`] per snapshot, each with the [`Reason`]s behind it; it
//! deletes nothing. `envsnap forget` applies a plan, `forget --dry-run` prints one.
//! `docs/RETENTION.md` describes the rules for users.
//!
//! Each environment (branch) is planned on its own, and within it each kind of
//! snapshot follows its own rule:
//!
//! | trigger | kept by |
//! |---|---|
//! | `schedule` | [`Policy::automated`] (or the environment type's [`Policy::per_type`]) |
//! | `pre-merge`, `pre-push` | [`Policy::hooks`] |
//! | `manual` | the newest [`Policy::manual_limit`] of the environment |
//! | `safety` | [`Policy::safety_days`] after it was taken |
//!
//! Whatever the rules say, a pinned snapshot is kept, a snapshot whose `--keep-for`
//! date is ahead is kept, and so is the newest snapshot of every environment whose
//! branch exists: retention never leaves an environment with nothing to restore.
//! A deleted branch's snapshots are planned as usual for
//! [`Policy::gone_branch_days`], then all go but the pinned and `--keep-for` ones.
//!
//! The keep rules ([`KeepRules`]) mean what they mean in restic's `forget`: `daily: 7`
//! keeps the newest snapshot of each of the 7 most recent days that have a snapshot,
//! and one snapshot can answer several rules at once (the newest snapshot is the
//! newest of its day, its week and its month). Periods are calendar periods in UTC,
//! so a plan does not depend on the machine's time zone; weeks are ISO 8601 weeks.
//!
//! "Newest" orders snapshots by creation time; two taken at the same instant are
//! ordered by id, so that a plan never depends on the order of its input.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, IsoWeek, NaiveDate, Timelike, Utc};

use crate::config::{EnvironmentType, RetentionPreset};
use crate::snapshot::{Manifest, Snapshot, Trigger};

/// Days a safety snapshot is kept unless a policy says otherwise: long enough to
/// notice that a restore went wrong and `envsnap undo` it.
pub const DEFAULT_SAFETY_DAYS: u32 = 7;

/// Days the snapshots of a deleted branch are kept unless a policy says otherwise:
/// long enough to bring back a branch deleted by mistake, or merged too early.
pub const DEFAULT_GONE_BRANCH_DAYS: u32 = 30;

/// One snapshot, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The snapshot id; unique among the candidates of one plan.
    pub id: String,
    /// The environment: the branch it belongs to.
    pub env: String,
    /// The type of the environment. Like `branch_gone_since`, it describes the
    /// environment, so every candidate of one environment should carry the same
    /// value; [`plan`] reads it from the environment's newest snapshot.
    pub env_type: EnvironmentType,
    /// When it was taken.
    pub created: DateTime<Utc>,
    /// Why it was taken: decides which rule applies to it.
    pub trigger: Trigger,
    /// The date given by `backup --keep-for`: kept at least until then.
    pub expires: Option<DateTime<Utc>>,
    /// Pinned with `envsnap pin`: kept until unpinned.
    pub pinned: bool,
    /// When the branch was deleted (or merged and deleted); `None` while it exists.
    pub branch_gone_since: Option<DateTime<Utc>>,
}

/// How many snapshots of one series to keep, restic style. A rule at 0 (or `None`)
/// keeps nothing by itself; a snapshot is kept when any rule keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepRules {
    /// The newest N snapshots.
    pub last: u32,
    /// The newest snapshot of each of the N most recent hours that have one.
    pub hourly: u32,
    /// The newest snapshot of each of the N most recent quarter days (00–06, 06–12,
    /// 12–18, 18–24 UTC) that have one.
    pub six_hourly: u32,
    /// The newest snapshot of each of the N most recent days that have one.
    pub daily: u32,
    /// The newest snapshot of each of the N most recent ISO weeks that have one.
    pub weekly: u32,
    /// The newest snapshot of each of the N most recent months that have one.
    pub monthly: u32,
    /// The newest snapshot of each of the N most recent years that have one.
    pub yearly: u32,
    /// Every snapshot taken within this long of the series' newest one. Measured
    /// from the newest snapshot rather than from now, as restic does, so that a
    /// schedule that stopped running does not let the rule run out of snapshots.
    pub within: Option<Duration>,
}

impl KeepRules {
    /// The automated rules of a preset. The counts add up to the platforms' 2, 21 and
    /// 44 automated backups. One snapshot can fill places in several rules, so fewer
    /// distinct snapshots are kept (docs/RETENTION.md gives the ranges, which the
    /// tests check).
    pub fn preset(preset: RetentionPreset) -> Self {
        match preset {
            RetentionPreset::Essential => KeepRules { daily: 2, ..KeepRules::default() },
            RetentionPreset::Advanced => KeepRules { daily: 7, weekly: 4, monthly: 10, ..KeepRules::default() },
            RetentionPreset::Premium => KeepRules { six_hourly: 4, daily: 30, monthly: 10, ..KeepRules::default() },
        }
    }

    /// The calendar rules, finest first, with their counts.
    fn calendar(&self) -> [(Granularity, u32); 6] {
        [
            (Granularity::Hour, self.hourly),
            (Granularity::SixHours, self.six_hourly),
            (Granularity::Day, self.daily),
            (Granularity::Week, self.weekly),
            (Granularity::Month, self.monthly),
            (Granularity::Year, self.yearly),
        ]
    }
}

/// What a [`plan`] keeps. Build one with [`Policy::preset`] or field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The rules for automated (`schedule`) snapshots, applied to each environment.
    pub automated: KeepRules,
    /// Rules that replace `automated` for the environments of a type.
    pub per_type: BTreeMap<EnvironmentType, KeepRules>,
    /// The newest N manual snapshots kept in each environment of a type. A type
    /// that is absent has no limit: manual snapshots are kept until deleted.
    pub manual_limit: BTreeMap<EnvironmentType, u32>,
    /// The rules for the snapshots that git hooks take (`pre-merge`, `pre-push`,
    /// together), applied to each environment.
    pub hooks: KeepRules,
    /// Days a safety snapshot (taken before a restore) is kept.
    pub safety_days: u32,
    /// Days the snapshots of a deleted branch are kept after it went.
    pub gone_branch_days: u32,
}

impl Policy {
    /// The rules of a preset, modelled on hosting platforms' backup schedules.
    /// `docs/RETENTION.md` lists the numbers and how they were chosen.
    pub fn preset(preset: RetentionPreset) -> Self {
        let automated = KeepRules::preset(preset);
        let production_manual = match preset {
            RetentionPreset::Essential => 2,
            RetentionPreset::Advanced | RetentionPreset::Premium => 4,
        };
        Policy {
            automated,
            per_type: BTreeMap::new(),
            manual_limit: BTreeMap::from([
                (EnvironmentType::Production, production_manual),
                (EnvironmentType::Staging, 2),
                (EnvironmentType::Development, 2),
            ]),
            // Enough to undo the last few merges, and the last week of them.
            hooks: KeepRules { last: 4, daily: 7, ..KeepRules::default() },
            safety_days: DEFAULT_SAFETY_DAYS,
            gone_branch_days: DEFAULT_GONE_BRANCH_DAYS,
        }
    }

    /// The rules for the automated snapshots of an environment of this type.
    pub fn automated_rules(&self, env_type: EnvironmentType) -> &KeepRules {
        self.per_type.get(&env_type).unwrap_or(&self.automated)
    }
}

impl Default for Policy {
    /// The `essential` preset: what a repository whose config names no retention gets.
    fn default() -> Self {
        Policy::preset(RetentionPreset::Essential)
    }
}

/// The rules that keep a kind of snapshot in an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Series {
    /// Automated snapshots (`schedule`), kept by [`Policy::automated`].
    Automated,
    /// Git hook snapshots (`pre-merge`, `pre-push`), kept by [`Policy::hooks`].
    Hooks,
}

impl Series {
    /// The words naming its snapshots, before "snapshot".
    fn words(self) -> &'static str {
        match self {
            Series::Automated => "automated",
            Series::Hooks => "pre-merge/pre-push",
        }
    }
}

/// A calendar period (UTC) of a keep rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// An hour (0–23) of a day.
    Hour {
        /// The day.
        day: NaiveDate,
        /// The hour.
        hour: u32,
    },
    /// A quarter of a day: the six hours from `start` (0, 6, 12 or 18).
    SixHours {
        /// The day.
        day: NaiveDate,
        /// The first hour.
        start: u32,
    },
    /// A day.
    Day(NaiveDate),
    /// An ISO 8601 week, Monday to Sunday; its year may differ from its days' year.
    Week(IsoWeek),
    /// A month (1–12) of a year.
    Month {
        /// The year.
        year: i32,
        /// The month.
        month: u32,
    },
    /// A year.
    Year(i32),
}

/// The length of a keep rule's periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Granularity {
    Hour,
    SixHours,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    /// The period of this length that holds `time`.
    fn of(granularity: Granularity, time: DateTime<Utc>) -> Self {
        let day = time.date_naive();
        match granularity {
            Granularity::Hour => Period::Hour { day, hour: time.hour() },
            Granularity::SixHours => Period::SixHours { day, start: time.hour() / 6 * 6 },
            Granularity::Day => Period::Day(day),
            Granularity::Week => Period::Week(day.iso_week()),
            Granularity::Month => Period::Month { year: day.year(), month: day.month() },
            Granularity::Year => Period::Year(day.year()),
        }
    }

    /// The rule's name: "daily", "weekly", …
    fn adjective(&self) -> &'static str {
        match self {
            Period::Hour { .. } => "hourly",
            Period::SixHours { .. } => "6-hourly",
            Period::Day(_) => "daily",
            Period::Week(_) => "weekly",
            Period::Month { .. } => "monthly",
            Period::Year(_) => "yearly",
        }
    }
}

impl fmt::Display for Period {
    /// `2026-11-20 14:00`, `2026-11-20 12:00–18:00`, `2026-11-20`, `2026-W47`,
    /// `2026-11`, `2026`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Hour { day, hour } => write!(f, "{day} {hour:02}:00"),
            Period::SixHours { day, start } => write!(f, "{day} {start:02}:00–{:02}:00", start + 6),
            Period::Day(day) => write!(f, "{day}"),
            Period::Week(week) => write!(f, "{}-W{:02}", week.year(), week.week()),
            Period::Month { year, month } => write!(f, "{year}-{month:02}"),
            Period::Year(year) => write!(f, "{year}"),
        }
    }
}

/// Why a snapshot is kept, or why it goes. [`Reason::keeps`] tells which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Keeps: pinned with `envsnap pin`.
    Pinned,
    /// Keeps: its `--keep-for` date is still ahead.
    KeepFor(DateTime<Utc>),
    /// Keeps: the newest snapshot of its environment, whose branch exists.
    Newest,
    /// Keeps: one of the newest snapshots of its series (`last`); 1 is the newest.
    Last {
        /// The rules that keep it.
        series: Series,
        /// Its place from the newest, from 1.
        rank: u32,
    },
    /// Keeps: the newest snapshot of its series in a period (`hourly` … `yearly`).
    Period {
        /// The rules that keep it.
        series: Series,
        /// The period it stands for.
        period: Period,
    },
    /// Keeps: taken within `window` of its series' newest snapshot (`within`).
    Within {
        /// The rules that keep it.
        series: Series,
        /// The rule's window.
        window: Duration,
    },
    /// Keeps: a manual snapshot within the manual limit of its environment type.
    ManualLimit {
        /// Its place among the environment's manual snapshots, from 1 (the newest).
        rank: u32,
        /// The limit; `None` when the type has none.
        limit: Option<u32>,
    },
    /// Keeps: a safety snapshot younger than the policy's `safety_days`.
    SafetyFresh(DateTime<Utc>),
    /// Goes: no rule keeps it.
    NoRule,
    /// Goes: a manual snapshot older than the newest `limit` of its environment.
    OverManualLimit {
        /// The limit of its environment type.
        limit: u32,
    },
    /// Goes: a safety snapshot older than the policy's `safety_days`.
    SafetyExpired {
        /// The policy's `safety_days`.
        days: u32,
    },
    /// Goes: its branch was deleted longer ago than the policy's `gone_branch_days`.
    BranchGone {
        /// When the branch went.
        since: DateTime<Utc>,
        /// The policy's `gone_branch_days`.
        days: u32,
    },
}

impl Reason {
    /// Whether this reason keeps the snapshot (otherwise it says why it goes).
    pub fn keeps(&self) -> bool {
        match self {
            Reason::Pinned
            | Reason::KeepFor(_)
            | Reason::Newest
            | Reason::Last { .. }
            | Reason::Period { .. }
            | Reason::Within { .. }
            | Reason::ManualLimit { .. }
            | Reason::SafetyFresh(_) => true,
            Reason::NoRule
            | Reason::OverManualLimit { .. }
            | Reason::SafetyExpired { .. }
            | Reason::BranchGone { .. } => false,
        }
    }
}

impl fmt::Display for Reason {
    /// The words `forget` prints beside a snapshot, e.g. "daily snapshot for 2026-11-20".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Pinned => f.write_str("pinned"),
            Reason::KeepFor(until) => write!(f, "kept for --keep-for until {}", minutes(until)),
            Reason::Newest => f.write_str("newest snapshot of the environment"),
            Reason::Last { series, rank } => write!(f, "{} {} snapshot", newest(*rank), series.words()),
            // The common case reads best without "automated": "daily snapshot for …".
            Reason::Period { series: Series::Automated, period } => {
                write!(f, "{} snapshot for {period}", period.adjective())
            }
            Reason::Period { series, period } => {
                write!(f, "{} {} snapshot for {period}", period.adjective(), series.words())
            }
            Reason::Within { series, window } => {
                write!(f, "{} snapshot taken within {} of the newest", series.words(), span(*window))
            }
            Reason::ManualLimit { rank, limit: Some(limit) } => {
                write!(f, "{} manual snapshot (limit {limit})", newest(*rank))
            }
            Reason::ManualLimit { rank, limit: None } => write!(f, "{} manual snapshot (no limit)", newest(*rank)),
            Reason::SafetyFresh(until) => write!(f, "safety snapshot, kept until {}", minutes(until)),
            Reason::NoRule => f.write_str("matched no rule"),
            Reason::OverManualLimit { limit } => write!(f, "manual snapshot beyond the newest {limit}"),
            Reason::SafetyExpired { days } => write!(f, "safety snapshot older than {}", count(*days, "day")),
            Reason::BranchGone { since, days } => {
                write!(f, "branch deleted {}, kept {}", since.format("%Y-%m-%d"), count(*days, "day"))
            }
        }
    }
}

/// `2026-11-20 14:05 UTC`.
fn minutes(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `1 day`, `7 days`.
fn count(n: impl Into<i64>, unit: &str) -> String {
    let n = n.into();
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

/// A rule's window in the largest whole unit: `7 days`, `36 hours`, `90 minutes`.
fn span(window: Duration) -> String {
    if window.num_days() != 0 && window == Duration::days(window.num_days()) {
        count(window.num_days(), "day")
    } else if window.num_hours() != 0 && window == Duration::hours(window.num_hours()) {
        count(window.num_hours(), "hour")
    } else {
        count(window.num_minutes(), "minute")
    }
}

/// `newest`, `2nd newest`, `3rd newest`, `11th newest`.
fn newest(rank: u32) -> String {
    let suffix = match (rank % 10, rank % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    if rank == 1 { "newest".to_owned() } else { format!("{rank}{suffix} newest") }
}

/// The plan for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot.
    pub id: String,
    /// Whether it stays.
    pub keep: bool,
    /// When kept, every rule that keeps it (never empty); when not, why it goes
    /// (never empty, and none of them [keeps](Reason::keeps)).
    pub reasons: Vec<Reason>,
}

/// Which of `candidates` `policy` keeps at `now`, and why: one decision per
/// candidate, ordered by environment name, then newest first.
pub fn plan(candidates: &[Candidate], policy: &Policy, now: DateTime<Utc>) -> Vec<Decision> {
    let mut ordered: Vec<&Candidate> = candidates.iter().collect();
    ordered.sort_by(|a, b| a.env.cmp(&b.env).then(b.created.cmp(&a.created)).then(a.id.cmp(&b.id)));
    ordered.chunk_by(|a, b| a.env == b.env).flat_map(|environment| plan_environment(environment, policy, now)).collect()
}

/// The plan for the snapshots of one environment, given newest first.
fn plan_environment(snapshots: &[&Candidate], policy: &Policy, now: DateTime<Utc>) -> Vec<Decision> {
    let mut keeps: Vec<Vec<Reason>> = vec![Vec::new(); snapshots.len()];
    let mut goes: Vec<Option<Reason>> = vec![None; snapshots.len()];
    for (index, snapshot) in snapshots.iter().enumerate() {
        if snapshot.pinned {
            keeps[index].push(Reason::Pinned);
        }
        if let Some(until) = snapshot.expires
            && until > now
        {
            keeps[index].push(Reason::KeepFor(until));
        }
    }

    if let Some(newest) = snapshots.first() {
        let gone_for_good = newest.branch_gone_since.filter(|since| now >= add_days(*since, policy.gone_branch_days));
        if let Some(since) = gone_for_good {
            goes.fill(Some(Reason::BranchGone { since, days: policy.gone_branch_days }));
        } else {
            keeps[0].push(Reason::Newest);
            let of = |wanted: &[Trigger]| -> Vec<usize> {
                (0..snapshots.len()).filter(|&index| wanted.contains(&snapshots[index].trigger)).collect()
            };
            let automated = policy.automated_rules(newest.env_type);
            keep_series(snapshots, &of(&[Trigger::Schedule]), automated, Series::Automated, &mut keeps);
            keep_series(
                snapshots,
                &of(&[Trigger::PreMerge, Trigger::PrePush]),
                &policy.hooks,
                Series::Hooks,
                &mut keeps,
            );

            let limit = policy.manual_limit.get(&newest.env_type).copied();
            for (rank, index) in (1..).zip(of(&[Trigger::Manual])) {
                match limit {
                    Some(limit) if rank > limit => goes[index] = Some(Reason::OverManualLimit { limit }),
                    _ => keeps[index].push(Reason::ManualLimit { rank, limit }),
                }
            }

            for index in of(&[Trigger::Safety]) {
                let until = add_days(snapshots[index].created, policy.safety_days);
                if until > now {
                    keeps[index].push(Reason::SafetyFresh(until));
                } else {
                    goes[index] = Some(Reason::SafetyExpired { days: policy.safety_days });
                }
            }
        }
    }

    snapshots
        .iter()
        .zip(keeps)
        .zip(goes)
        .map(|((snapshot, keeps), goes)| {
            let keep = !keeps.is_empty();
            let reasons = if keep { keeps } else { vec![goes.unwrap_or(Reason::NoRule)] };
            Decision { id: snapshot.id.clone(), keep, reasons }
        })
        .collect()
}

/// Applies `rules` to `series` (indices into `snapshots`, newest first).
fn keep_series(snapshots: &[&Candidate], series: &[usize], rules: &KeepRules, name: Series, keeps: &mut [Vec<Reason>]) {
    for (rank, &index) in (1..=rules.last).zip(series) {
        keeps[index].push(Reason::Last { series: name, rank });
    }
    for (granularity, wanted) in rules.calendar() {
        // Newest first, so the first snapshot met in a period is its newest.
        let mut found = 0;
        let mut previous = None;
        for &index in series {
            if found == wanted {
                break;
            }
            let period = Period::of(granularity, snapshots[index].created);
            if previous != Some(period) {
                keeps[index].push(Reason::Period { series: name, period });
                previous = Some(period);
                found += 1;
            }
        }
    }
    if let Some(window) = rules.within
        && let Some(&first) = series.first()
    {
        let newest = snapshots[first].created;
        for &index in series {
            if newest.signed_duration_since(snapshots[index].created) > window {
                break;
            }
            keeps[index].push(Reason::Within { series: name, window });
        }
    }
}

/// `days` after `time`; the end of time if that is past it.
fn add_days(time: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    time.checked_add_signed(Duration::days(i64::from(days))).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Whether `latest` may name a snapshot with this manifest: one of the whole
/// environment, taken by a person, a hook or a schedule. A safety snapshot is left
/// out — it holds what a restore overwrote, and `undo` is the way back to it, so
/// `restore` right after a restore must not do what `undo` does — and so is a
/// partial one (`backup --element`), which would bring back part of an environment.
pub fn names_latest(manifest: &Manifest) -> bool {
    manifest.trigger != Trigger::Safety && !manifest.partial
}

/// The snapshot `latest` names among `snapshots` (of one environment): the newest
/// for which [`names_latest`] holds, by creation time, then id, as retention orders
/// them. Every command that resolves `latest` — `restore`, `show`, `export`, `diff`,
/// the FUSE view's `latest` link — asks this function.
pub fn latest<'a>(snapshots: impl IntoIterator<Item = &'a Snapshot>) -> Option<&'a Snapshot> {
    snapshots
        .into_iter()
        .filter(|snapshot| names_latest(&snapshot.manifest))
        .max_by(|a, b| a.manifest.created.cmp(&b.manifest.created).then_with(|| a.id.cmp(&b.id)))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn at(text: &str) -> std::result::Result<DateTime<Utc>, chrono::ParseError> {
        text.parse()
    }

    fn snapshot(id: &str, env: &str, created: DateTime<Utc>, trigger: Trigger) -> Candidate {
        Candidate {
            id: id.to_owned(),
            env: env.to_owned(),
            env_type: EnvironmentType::Production,
            created,
            trigger,
            expires: None,
            pinned: false,
            branch_gone_since: None,
        }
    }

    /// A policy with these automated rules and nothing else.
    fn automated_only(automated: KeepRules) -> Policy {
        Policy {
            automated,
            per_type: BTreeMap::new(),
            manual_limit: BTreeMap::new(),
            hooks: KeepRules::default(),
            safety_days: DEFAULT_SAFETY_DAYS,
            gone_branch_days: DEFAULT_GONE_BRANCH_DAYS,
        }
    }

    fn kept(decisions: &[Decision]) -> BTreeSet<&str> {
        decisions.iter().filter(|decision| decision.keep).map(|decision| decision.id.as_str()).collect()
    }

    /// The reasons given for `id`, in words.
    fn words(decisions: &[Decision], id: &str) -> Vec<String> {
        decisions
            .iter()
            .filter(|decision| decision.id == id)
            .flat_map(|decision| decision.reasons.iter().map(ToString::to_string))
            .collect()
    }

    #[test]
    fn daily_keeps_the_newest_of_each_recent_day_that_has_a_snapshot() -> TestResult {
        let candidates = [
            snapshot("a", "main", at("2026-11-20T10:00:00Z")?, Trigger::Schedule),
            snapshot("b", "main", at("2026-11-20T08:00:00Z")?, Trigger::Schedule),
            snapshot("c", "main", at("2026-11-18T23:00:00Z")?, Trigger::Schedule),
            snapshot("d", "main", at("2026-11-18T01:00:00Z")?, Trigger::Schedule),
            snapshot("e", "main", at("2026-11-15T12:00:00Z")?, Trigger::Schedule),
            snapshot("f", "main", at("2026-11-10T12:00:00Z")?, Trigger::Schedule),
        ];
        let policy = automated_only(KeepRules { daily: 3, ..KeepRules::default() });
        let decisions = plan(&candidates, &policy, at("2026-11-20T12:30:00Z")?);
        assert_eq!(kept(&decisions), BTreeSet::from(["a", "c", "e"]));
        assert_eq!(words(&decisions, "a"), ["newest snapshot of the environment", "daily snapshot for 2026-11-20"]);
        assert_eq!(words(&decisions, "e"), ["daily snapshot for 2026-11-15"]);
        assert_eq!(words(&decisions, "f"), ["matched no rule"]);
        Ok(())
    }

    #[test]
    fn weeks_are_iso_weeks_even_across_the_new_year() -> TestResult {
        // 2026-12-31 (Thursday) and 2027-01-02 (Saturday) are both in 2026-W53.
        let candidates = [
            snapshot("thursday", "main", at("2026-12-31T12:00:00Z")?, Trigger::Schedule),
            snapshot("saturday", "main", at("2027-01-02T12:00:00Z")?, Trigger::Schedule),
            snapshot("monday", "main", at("2027-01-04T12:00:00Z")?, Trigger::Schedule),
        ];
        let policy = automated_only(KeepRules { weekly: 2, ..KeepRules::default() });
        let decisions = plan(&candidates, &policy, at("2027-01-05T00:00:00Z")?);
        assert_eq!(kept(&decisions), BTreeSet::from(["monday", "saturday"]));
        assert_eq!(words(&decisions, "saturday"), ["weekly snapshot for 2026-W53"]);
        assert_eq!(words(&decisions, "monday")[1], "weekly snapshot for 2027-W01");
        Ok(())
    }

    #[test]
    fn six_hourly_periods_are_quarter_days_from_midnight_utc() -> TestResult {
        let candidates = [
            snapshot("05:59", "main", at("2026-11-20T05:59:00Z")?, Trigger::Schedule),
            snapshot("06:00", "main", at("2026-11-20T06:00:00Z")?, Trigger::Schedule),
            snapshot("11:00", "main", at("2026-11-20T11:00:00Z")?, Trigger::Schedule),
            snapshot("17:59", "main", at("2026-11-20T17:59:00Z")?, Trigger::Schedule),
            snapshot("18:00", "main", at("2026-11-20T18:00:00Z")?, Trigger::Schedule),
        ];
        let policy = automated_only(KeepRules { six_hourly: 3, ..KeepRules::default() });
        let decisions = plan(&candidates, &policy, at("2026-11-20T19:00:00Z")?);
        assert_eq!(kept(&decisions), BTreeSet::from(["11:00", "17:59", "18:00"]));
        assert_eq!(words(&decisions, "17:59"), ["6-hourly snapshot for 2026-11-20 12:00–18:00"]);
        Ok(())
    }

    #[test]
    fn hourly_monthly_and_yearly_name_their_period() -> TestResult {
        let candidates = [
            snapshot("new", "main", at("2026-11-20T14:05:00Z")?, Trigger::Schedule),
            snapshot("old", "main", at("2025-12-31T23:59:00Z")?, Trigger::Schedule),
        ];
        let policy = automated_only(KeepRules { hourly: 2, monthly: 2, yearly: 2, ..KeepRules::default() });
        let decisions = plan(&candidates, &policy, at("2026-11-20T15:00:00Z")?);
        assert_eq!(
            words(&decisions, "old"),
            ["hourly snapshot for 2025-12-31 23:00", "monthly snapshot for 2025-12", "yearly snapshot for 2025"]
        );
        Ok(())
    }

    #[test]
    fn last_and_within_count_from_the_newest_snapshot_not_from_now() -> TestResult {
        // The schedule stopped on 1 June; half a year later `within` still keeps the
        // last days it ran rather than nothing.
        let candidates: Vec<Candidate> = (0..10)
            .map(|day| -> std::result::Result<Candidate, chrono::ParseError> {
                let created = at("2026-06-01T03:00:00Z")? - Duration::days(day);
                Ok(snapshot(&format!("{day}"), "main", created, Trigger::Schedule))
            })
            .collect::<std::result::Result<_, _>>()?;
        let policy = automated_only(KeepRules { last: 2, within: Some(Duration::days(3)), ..KeepRules::default() });
        let decisions = plan(&candidates, &policy, at("2026-11-20T12:30:00Z")?);
        assert_eq!(kept(&decisions), BTreeSet::from(["0", "1", "2", "3"]));
        assert_eq!(
            words(&decisions, "1"),
            ["2nd newest automated snapshot", "automated snapshot taken within 3 days of the newest"]
        );
        Ok(())
    }

    #[test]
    fn manual_limit_follows_the_environment_type() -> TestResult {
        let mut candidates = Vec::new();
        for (env, env_type) in [("main", EnvironmentType::Production), ("feature", EnvironmentType::Development)] {
            for day in 1..=5 {
                let mut candidate =
                    snapshot(&format!("{env}-{day}"), env, at(&format!("2026-11-0{day}T09:00:00Z"))?, Trigger::Manual);
                candidate.env_type = env_type;
                candidates.push(candidate);
            }
        }
        let decisions = plan(&candidates, &Policy::preset(RetentionPreset::Advanced), at("2026-11-20T00:00:00Z")?);
        assert_eq!(
            kept(&decisions),
            BTreeSet::from(["feature-4", "feature-5", "main-2", "main-3", "main-4", "main-5"])
        );
        assert_eq!(words(&decisions, "main-4"), ["2nd newest manual snapshot (limit 4)"]);
        assert_eq!(words(&decisions, "feature-3"), ["manual snapshot beyond the newest 2"]);

        // A type without a limit keeps every manual snapshot.
        let unlimited = automated_only(KeepRules::default());
        let decisions = plan(&candidates, &unlimited, at("2026-11-20T00:00:00Z")?);
        assert_eq!(kept(&decisions).len(), 10);
        assert_eq!(words(&decisions, "main-3"), ["3rd newest manual snapshot (no limit)"]);
        Ok(())
    }

    #[test]
    fn keep_for_is_a_floor_not_a_ceiling() -> TestResult {
        let now = at("2026-11-20T00:00:00Z")?;
        let mut ahead = snapshot("ahead", "main", at("2026-11-01T09:00:00Z")?, Trigger::Manual);
        ahead.expires = Some(at("2026-12-31T00:00:00Z")?);
        let mut passed_beyond_limit = snapshot("passed-beyond", "main", at("2026-11-02T09:00:00Z")?, Trigger::Manual);
        passed_beyond_limit.expires = Some(at("2026-11-10T00:00:00Z")?);
        let mut passed_within_limit = snapshot("passed-within", "main", at("2026-11-10T09:00:00Z")?, Trigger::Manual);
        passed_within_limit.expires = Some(at("2026-11-15T00:00:00Z")?);
        let newest = snapshot("newest", "main", at("2026-11-11T09:00:00Z")?, Trigger::Manual);
        let candidates = [ahead, passed_beyond_limit, passed_within_limit, newest];

        let decisions = plan(&candidates, &Policy::preset(RetentionPreset::Essential), now);
        assert_eq!(kept(&decisions), BTreeSet::from(["ahead", "newest", "passed-within"]));
        assert_eq!(words(&decisions, "ahead"), ["kept for --keep-for until 2026-12-31 00:00 UTC"]);
        assert_eq!(words(&decisions, "passed-within"), ["2nd newest manual snapshot (limit 2)"]);
        assert_eq!(words(&decisions, "passed-beyond"), ["manual snapshot beyond the newest 2"]);
        Ok(())
    }

    #[test]
    fn safety_snapshots_go_after_safety_days_unless_newest() -> TestResult {
        let candidates = [
            snapshot("fresh", "main", at("2026-11-18T10:00:00Z")?, Trigger::Safety),
            snapshot("old", "main", at("2026-11-10T11:00:00Z")?, Trigger::Safety),
            snapshot("only", "other", at("2026-01-10T11:00:00Z")?, Trigger::Safety),
        ];
        let decisions = plan(&candidates, &Policy::default(), at("2026-11-20T12:30:00Z")?);
        assert_eq!(kept(&decisions), BTreeSet::from(["fresh", "only"]));
        assert_eq!(
            words(&decisions, "fresh"),
            ["newest snapshot of the environment", "safety snapshot, kept until 2026-11-25 10:00 UTC"]
        );
        assert_eq!(words(&decisions, "old"), ["safety snapshot older than 7 days"]);
        assert_eq!(words(&decisions, "only"), ["newest snapshot of the environment"]);

        // The boundaries: kept while younger than 7 days, and while `--keep-for` is ahead.
        let now = at("2026-11-20T12:30:00Z")?;
        let mut candidates = [
            snapshot("newest", "main", now, Trigger::Manual),
            snapshot("just-fresh", "main", now - Duration::days(7) + Duration::minutes(1), Trigger::Safety),
            snapshot("just-old", "main", now - Duration::days(7), Trigger::Safety),
            snapshot("keep-for-now", "main", now - Duration::days(7), Trigger::Safety),
        ];
        candidates[3].expires = Some(now);
        let decisions = plan(&candidates, &Policy::default(), now);
        assert_eq!(kept(&decisions), BTreeSet::from(["just-fresh", "newest"]));
        Ok(())
    }

    #[test]
    fn a_deleted_branch_is_planned_as_usual_then_goes() -> TestResult {
        let gone = at("2026-10-01T08:00:00Z")?;
        let mut candidates = Vec::new();
        for (id, created) in
            [("one", "2026-09-01"), ("two", "2026-09-15"), ("three", "2026-09-28"), ("pinned", "2026-08-01")]
        {
            let mut candidate = snapshot(id, "feature/search", at(&format!("{created}T09:00:00Z"))?, Trigger::Manual);
            candidate.env_type = EnvironmentType::Development;
            candidate.branch_gone_since = Some(gone);
            candidate.pinned = id == "pinned";
            candidates.push(candidate);
        }
        let policy = Policy::default();

        let decisions = plan(&candidates, &policy, at("2026-10-30T00:00:00Z")?);
        assert_eq!(kept(&decisions), BTreeSet::from(["pinned", "three", "two"]));
        assert_eq!(words(&decisions, "one"), ["manual snapshot beyond the newest 2"]);

        let decisions = plan(&candidates, &policy, at("2026-10-31T08:00:00Z")?);
        assert_eq!(kept(&decisions), BTreeSet::from(["pinned"]));
        assert_eq!(words(&decisions, "three"), ["branch deleted 2026-10-01, kept 30 days"]);
        assert_eq!(words(&decisions, "pinned"), ["pinned"]);
        Ok(())
    }

    #[test]
    fn per_type_rules_replace_the_automated_rules() -> TestResult {
        let mut candidates = Vec::new();
        for (env, env_type) in [("main", EnvironmentType::Production), ("staging", EnvironmentType::Staging)] {
            for day in 1..=5 {
                let mut candidate = snapshot(
                    &format!("{env}-{day}"),
                    env,
                    at(&format!("2026-11-0{day}T03:00:00Z"))?,
                    Trigger::Schedule,
                );
                candidate.env_type = env_type;
                candidates.push(candidate);
            }
        }
        let mut policy = automated_only(KeepRules { daily: 3, ..KeepRules::default() });
        policy.per_type.insert(EnvironmentType::Staging, KeepRules { last: 1, ..KeepRules::default() });
        let decisions = plan(&candidates, &policy, at("2026-11-20T00:00:00Z")?);
        assert_eq!(kept(&decisions), BTreeSet::from(["main-3", "main-4", "main-5", "staging-5"]));
        Ok(())
    }

    #[test]
    fn hook_rules_take_pre_merge_and_pre_push_together() -> TestResult {
        let candidates = [
            snapshot("merge", "main", at("2026-11-19T15:00:00Z")?, Trigger::PreMerge),
            snapshot("push", "main", at("2026-11-19T10:00:00Z")?, Trigger::PrePush),
            snapshot("older", "main", at("2026-11-17T15:00:00Z")?, Trigger::PreMerge),
            snapshot("oldest", "main", at("2026-11-12T15:00:00Z")?, Trigger::PrePush),
        ];
        let mut policy = automated_only(KeepRules::default());
        policy.hooks = KeepRules { last: 2, daily: 2, ..KeepRules::default() };
        let decisions = plan(&candidates, &policy, at("2026-11-20T00:00:00Z")?);
        assert_eq!(kept(&decisions), BTreeSet::from(["merge", "older", "push"]));
        assert_eq!(
            words(&decisions, "older"),
            ["daily pre-merge/pre-push snapshot for 2026-11-17"],
            "the second daily period is the 17th: the 19th's second snapshot does not count twice"
        );
        Ok(())
    }

    #[test]
    fn decisions_come_by_environment_then_newest_first() -> TestResult {
        let candidates = [
            snapshot("z-old", "zeta", at("2026-11-01T00:00:00Z")?, Trigger::Manual),
            snapshot("a-old", "alpha", at("2026-11-01T00:00:00Z")?, Trigger::Manual),
            snapshot("z-new", "zeta", at("2026-11-02T00:00:00Z")?, Trigger::Manual),
            snapshot("a-tie-2", "alpha", at("2026-11-03T00:00:00Z")?, Trigger::Manual),
            snapshot("a-tie-1", "alpha", at("2026-11-03T00:00:00Z")?, Trigger::Manual),
        ];
        let decisions = plan(&candidates, &Policy::default(), at("2026-11-20T00:00:00Z")?);
        let order: Vec<&str> = decisions.iter().map(|decision| decision.id.as_str()).collect();
        assert_eq!(order, ["a-tie-1", "a-tie-2", "a-old", "z-new", "z-old"]);
        assert_eq!(words(&decisions, "a-tie-1")[0], "newest snapshot of the environment");
        Ok(())
    }

    #[test]
    fn reasons_read_as_words() -> TestResult {
        let until = at("2026-12-01T10:00:00Z")?;
        let cases = [
            (Reason::Pinned, "pinned"),
            (Reason::Last { series: Series::Automated, rank: 1 }, "newest automated snapshot"),
            (Reason::Last { series: Series::Hooks, rank: 3 }, "3rd newest pre-merge/pre-push snapshot"),
            (Reason::Last { series: Series::Automated, rank: 12 }, "12th newest automated snapshot"),
            (Reason::Last { series: Series::Automated, rank: 22 }, "22nd newest automated snapshot"),
            (
                Reason::Within { series: Series::Automated, window: Duration::hours(36) },
                "automated snapshot taken within 36 hours of the newest",
            ),
            (
                Reason::Within { series: Series::Hooks, window: Duration::minutes(90) },
                "pre-merge/pre-push snapshot taken within 90 minutes of the newest",
            ),
            (Reason::SafetyFresh(until), "safety snapshot, kept until 2026-12-01 10:00 UTC"),
            (Reason::SafetyExpired { days: 1 }, "safety snapshot older than 1 day"),
            (Reason::BranchGone { since: until, days: 1 }, "branch deleted 2026-12-01, kept 1 day"),
        ];
        for (reason, expected) in cases {
            assert_eq!(reason.to_string(), expected);
        }
        Ok(())
    }

    // ---- A year of snapshots under each preset: what docs/RETENTION.md promises ----

    /// `count` times from `first`, `step` apart, up to `last`.
    fn every(first: DateTime<Utc>, step: Duration, last: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        std::iter::successors(Some(first), |time| Some(*time + step)).take_while(|time| *time <= last).collect()
    }

    /// Adds a snapshot named `<env> <trigger> <created>` for the caller to adjust.
    fn add<'a>(
        candidates: &'a mut Vec<Candidate>,
        env: &str,
        env_type: EnvironmentType,
        created: DateTime<Utc>,
        trigger: Trigger,
    ) -> &'a mut Candidate {
        let id = format!("{env} {trigger} {}", created.format("%Y-%m-%dT%H:%M"));
        candidates.push(Candidate { env_type, ..snapshot(&id, env, created, trigger) });
        candidates.last_mut().expect("a candidate was just pushed")
    }

    /// The worked example of docs/RETENTION.md, at `now` = 2026-11-20 12:30 UTC.
    fn a_year_of_snapshots(schedule_step: Duration) -> std::result::Result<Vec<Candidate>, chrono::ParseError> {
        let now = at("2026-11-20T12:30:00Z")?;
        let mut candidates = Vec::new();
        let production = EnvironmentType::Production;
        let development = EnvironmentType::Development;
        let week = Duration::weeks(1);

        // main, production: the schedule, manual snapshots every Monday (one pinned,
        // one kept for a while), pre-merge snapshots on Tuesdays and Thursdays and a
        // pre-push one on Thursdays, a safety snapshot on the 10th of each month and
        // one two days ago.
        for created in every(at("2025-11-20T00:00:00Z")?, schedule_step, now) {
            add(&mut candidates, "main", production, created, Trigger::Schedule);
        }
        for created in every(at("2025-11-24T09:15:00Z")?, week, now) {
            add(&mut candidates, "main", production, created, Trigger::Manual);
        }
        add(&mut candidates, "main", production, at("2026-01-15T10:00:00Z")?, Trigger::Manual).pinned = true;
        add(&mut candidates, "main", production, at("2026-06-01T10:00:00Z")?, Trigger::Manual).expires =
            Some(at("2026-12-31T00:00:00Z")?);
        for first in ["2025-11-25T15:00:00Z", "2025-11-20T15:00:00Z"] {
            for created in every(at(first)?, week, now) {
                add(&mut candidates, "main", production, created, Trigger::PreMerge);
            }
        }
        for created in every(at("2025-11-20T10:00:00Z")?, week, now) {
            add(&mut candidates, "main", production, created, Trigger::PrePush);
        }
        for (year, month) in [(2025, 12)].into_iter().chain((1..=11).map(|month| (2026, month))) {
            add(&mut candidates, "main", production, at(&format!("{year}-{month:02}-10T11:00:00Z"))?, Trigger::Safety);
        }
        add(&mut candidates, "main", production, at("2026-11-18T10:00:00Z")?, Trigger::Safety);

        // staging: a manual snapshot every 10 days.
        for created in every(at("2026-01-05T08:00:00Z")?, Duration::days(10), now) {
            add(&mut candidates, "staging", EnvironmentType::Staging, created, Trigger::Manual);
        }

        // feature/search: deleted on 1 October, more than 30 days ago; one pinned.
        let search_gone = Some(at("2026-10-01T00:00:00Z")?);
        for (created, trigger) in [
            ("2026-09-01T09:00:00Z", Trigger::Manual),
            ("2026-09-10T09:00:00Z", Trigger::Manual),
            ("2026-09-15T09:00:00Z", Trigger::Manual),
            ("2026-09-28T09:00:00Z", Trigger::Manual),
            ("2026-09-29T17:00:00Z", Trigger::PrePush),
        ] {
            let candidate = add(&mut candidates, "feature/search", development, at(created)?, trigger);
            candidate.branch_gone_since = search_gone;
            candidate.pinned = created.starts_with("2026-09-10");
        }

        // feature/cart: deleted on 10 November, less than 30 days ago.
        let cart_gone = Some(at("2026-11-10T00:00:00Z")?);
        for (created, trigger) in [
            ("2026-11-02T09:00:00Z", Trigger::Manual),
            ("2026-11-05T09:00:00Z", Trigger::Manual),
            ("2026-11-08T09:00:00Z", Trigger::Manual),
            ("2026-11-09T17:00:00Z", Trigger::PrePush),
        ] {
            add(&mut candidates, "feature/cart", development, at(created)?, trigger).branch_gone_since = cart_gone;
        }

        // feature/login: alive, a manual snapshot a day for five days.
        for created in every(at("2026-11-14T14:00:00Z")?, Duration::days(1), at("2026-11-18T14:00:00Z")?) {
            add(&mut candidates, "feature/login", development, created, Trigger::Manual);
        }
        Ok(candidates)
    }

    /// How many snapshots of each environment and trigger are kept, e.g.
    /// `("main", "schedule") => 18`.
    fn kept_counts(candidates: &[Candidate], decisions: &[Decision]) -> BTreeMap<(String, String), usize> {
        let kept = kept(decisions);
        let mut counts = BTreeMap::new();
        for candidate in candidates.iter().filter(|candidate| kept.contains(candidate.id.as_str())) {
            *counts.entry((candidate.env.clone(), candidate.trigger.to_string())).or_insert(0) += 1;
        }
        counts
    }

    /// The places of the automated rules that kept snapshots fill: one per
    /// (rule, period) or `last` rank, however many a single snapshot fills.
    fn automated_places(decisions: &[Decision]) -> usize {
        decisions
            .iter()
            .flat_map(|decision| &decision.reasons)
            .filter(|reason| {
                matches!(
                    reason,
                    Reason::Last { series: Series::Automated, .. } | Reason::Period { series: Series::Automated, .. }
                )
            })
            .count()
    }

    fn expected(main_schedule: usize, main_manual: usize) -> BTreeMap<(String, String), usize> {
        [
            ("feature/cart", "manual", 2),
            ("feature/cart", "pre-push", 1),
            ("feature/login", "manual", 2),
            ("feature/search", "manual", 1),
            ("main", "manual", main_manual),
            ("main", "pre-merge", 7),
            ("main", "pre-push", 1),
            ("main", "safety", 1),
            ("main", "schedule", main_schedule),
            ("staging", "manual", 2),
        ]
        .into_iter()
        .map(|(env, trigger, count)| ((env.to_owned(), trigger.to_owned()), count))
        .collect()
    }

    #[test]
    fn a_year_under_the_essential_preset() -> TestResult {
        let candidates = a_year_of_snapshots(Duration::hours(1))?;
        let decisions = plan(&candidates, &Policy::preset(RetentionPreset::Essential), at("2026-11-20T12:30:00Z")?);
        assert_eq!(kept_counts(&candidates, &decisions), expected(2, 4));
        assert_eq!(automated_places(&decisions), 2);
        assert_eq!(words(&decisions, "main schedule 2026-11-19T23:00"), ["daily snapshot for 2026-11-19"]);
        Ok(())
    }

    #[test]
    fn a_year_under_the_advanced_preset() -> TestResult {
        let candidates = a_year_of_snapshots(Duration::hours(1))?;
        let decisions = plan(&candidates, &Policy::preset(RetentionPreset::Advanced), at("2026-11-20T12:30:00Z")?);
        assert_eq!(kept_counts(&candidates, &decisions), expected(18, 6));
        assert_eq!(automated_places(&decisions), 21);
        assert_eq!(
            words(&decisions, "main schedule 2026-11-20T12:00"),
            [
                "newest snapshot of the environment",
                "daily snapshot for 2026-11-20",
                "weekly snapshot for 2026-W47",
                "monthly snapshot for 2026-11"
            ]
        );
        assert_eq!(
            words(&decisions, "main schedule 2026-11-15T23:00"),
            ["daily snapshot for 2026-11-15", "weekly snapshot for 2026-W46"]
        );
        assert_eq!(words(&decisions, "main schedule 2026-02-28T23:00"), ["monthly snapshot for 2026-02"]);
        assert_eq!(words(&decisions, "main schedule 2026-01-31T23:00"), ["matched no rule"]);
        assert_eq!(words(&decisions, "main safety 2026-11-10T11:00"), ["safety snapshot older than 7 days"]);
        assert_eq!(
            words(&decisions, "feature/search manual 2026-09-28T09:00"),
            ["branch deleted 2026-10-01, kept 30 days"]
        );
        Ok(())
    }

    #[test]
    fn a_year_under_the_premium_preset() -> TestResult {
        let candidates = a_year_of_snapshots(Duration::hours(6))?;
        let decisions = plan(&candidates, &Policy::preset(RetentionPreset::Premium), at("2026-11-20T12:30:00Z")?);
        assert_eq!(kept_counts(&candidates, &decisions), expected(40, 6));
        assert_eq!(automated_places(&decisions), 44);
        assert_eq!(
            words(&decisions, "main schedule 2026-11-19T18:00"),
            ["6-hourly snapshot for 2026-11-19 18:00–24:00", "daily snapshot for 2026-11-19"]
        );
        assert_eq!(words(&decisions, "main schedule 2026-10-22T18:00"), ["daily snapshot for 2026-10-22"]);
        Ok(())
    }

    /// Over every day of a year, at several times of day: the numbers of
    /// docs/RETENTION.md's preset table.
    #[test]
    fn preset_counts_hold_all_year_round() -> TestResult {
        for (preset, step, places, fewest, most) in [
            (RetentionPreset::Essential, Duration::hours(1), 2, 2, 2),
            (RetentionPreset::Advanced, Duration::hours(1), 21, 17, 19),
            (RetentionPreset::Premium, Duration::hours(6), 44, 39, 42),
        ] {
            let schedule: Vec<Candidate> = every(at("2025-01-01T00:00:00Z")?, step, at("2027-01-01T00:00:00Z")?)
                .into_iter()
                .map(|created| snapshot(&created.to_rfc3339(), "main", created, Trigger::Schedule))
                .collect();
            let policy = Policy::preset(preset);
            let mut seen = BTreeSet::new();
            for day in every(at("2026-01-01T00:00:00Z")?, Duration::days(1), at("2026-12-31T00:00:00Z")?) {
                for hour in [3, 12, 18, 23] {
                    let now = day + Duration::hours(hour) + Duration::minutes(30);
                    // A year of history is more than any preset looks at.
                    let start = schedule.partition_point(|candidate| candidate.created < now - Duration::days(366));
                    let end = schedule.partition_point(|candidate| candidate.created <= now);
                    let decisions = plan(&schedule[start..end], &policy, now);
                    assert_eq!(automated_places(&decisions), places, "{preset} at {now}");
                    seen.insert(kept(&decisions).len());
                }
            }
            assert_eq!(seen.first().copied(), Some(fewest), "{preset}: {seen:?}");
            assert_eq!(seen.last().copied(), Some(most), "{preset}: {seen:?}");
        }
        Ok(())
    }

    // ---- Properties: what holds for any snapshots, policy and time ----

    /// Candidate times are minutes after 2025-12-10, over 40 days: enough for the
    /// periods of every rule but `yearly` to repeat, and to cross a new year.
    const MINUTES: i64 = 40 * 24 * 60;

    fn minute(offset: i64) -> DateTime<Utc> {
        let start = DateTime::from_timestamp(1_765_324_800, 0).expect("2025-12-10 is a valid time");
        start + Duration::minutes(offset)
    }

    fn any_trigger() -> impl Strategy<Value = Trigger> {
        prop_oneof![
            Just(Trigger::Manual),
            Just(Trigger::PreMerge),
            Just(Trigger::PrePush),
            Just(Trigger::Schedule),
            Just(Trigger::Safety),
        ]
    }

    fn any_env_type() -> impl Strategy<Value = EnvironmentType> {
        prop_oneof![
            Just(EnvironmentType::Production),
            Just(EnvironmentType::Staging),
            Just(EnvironmentType::Development)
        ]
    }

    /// Up to 60 snapshots of up to 3 environments, some of them deleted branches.
    fn any_candidates() -> impl Strategy<Value = Vec<Candidate>> {
        let environments =
            prop::collection::vec((any_env_type(), prop::option::weighted(0.3, 0..MINUTES + 60 * 24 * 60)), 1..4);
        let snapshots = prop::collection::vec(
            (
                0..3usize,
                // Whole hours at times, so that snapshots share periods and instants.
                prop_oneof![0..MINUTES, (0..MINUTES / 60).prop_map(|hour| hour * 60)],
                any_trigger(),
                prop::option::weighted(0.2, 0..MINUTES + 60 * 24 * 60),
                prop::bool::weighted(0.1),
            ),
            0..60,
        );
        (environments, snapshots).prop_map(|(environments, snapshots)| {
            (0..)
                .zip(snapshots)
                .map(|(number, (env, created, trigger, expires, pinned))| {
                    let env = env % environments.len();
                    let (env_type, gone) = environments[env];
                    Candidate {
                        id: format!("{number:02}"),
                        env: format!("env{env}"),
                        env_type,
                        created: minute(created),
                        trigger,
                        expires: expires.map(minute),
                        pinned,
                        branch_gone_since: gone.map(minute),
                    }
                })
                .collect()
        })
    }

    fn any_rules() -> impl Strategy<Value = KeepRules> {
        ((0..4u32, 0..4u32, 0..4u32, 0..5u32), (0..4u32, 0..3u32, 0..2u32, prop::option::of(0..20 * 24i64))).prop_map(
            |((last, hourly, six_hourly, daily), (weekly, monthly, yearly, within))| KeepRules {
                last,
                hourly,
                six_hourly,
                daily,
                weekly,
                monthly,
                yearly,
                within: within.map(Duration::hours),
            },
        )
    }

    fn any_policy() -> impl Strategy<Value = Policy> {
        let limits = (prop::option::of(0..4u32), prop::option::of(0..4u32), prop::option::of(0..4u32));
        (any_rules(), prop::option::of((any_env_type(), any_rules())), any_rules(), limits, 0..10u32, 0..40u32)
            .prop_map(|(automated, per_type, hooks, limits, safety_days, gone_branch_days)| {
                let types = [EnvironmentType::Production, EnvironmentType::Staging, EnvironmentType::Development];
                Policy {
                    automated,
                    per_type: per_type.into_iter().collect(),
                    manual_limit: types
                        .into_iter()
                        .zip([limits.0, limits.1, limits.2])
                        .filter_map(|(env_type, limit)| Some((env_type, limit?)))
                        .collect(),
                    hooks,
                    safety_days,
                    gone_branch_days,
                }
            })
    }

    fn any_now() -> impl Strategy<Value = DateTime<Utc>> {
        (0..MINUTES + 60 * 24 * 60).prop_map(minute)
    }

    /// The snapshots of each environment, newest first (ties by id, as documented).
    fn environments(candidates: &[Candidate]) -> BTreeMap<&str, Vec<&Candidate>> {
        let mut environments: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
        for candidate in candidates {
            environments.entry(candidate.env.as_str()).or_default().push(candidate);
        }
        for snapshots in environments.values_mut() {
            snapshots.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        }
        environments
    }

    fn gone_for_good(newest: &Candidate, policy: &Policy, now: DateTime<Utc>) -> bool {
        newest.branch_gone_since.is_some_and(|since| now >= add_days(since, policy.gone_branch_days))
    }

    /// Checks that `kept` holds what `rules` promise for `series` (newest first).
    fn check_series(series: &[&Candidate], rules: &KeepRules, kept: &BTreeSet<&str>) -> Result<(), TestCaseError> {
        for candidate in series.iter().take(rules.last as usize) {
            prop_assert!(kept.contains(candidate.id.as_str()), "{} is among the last {}", candidate.id, rules.last);
        }
        for (granularity, wanted) in rules.calendar() {
            let mut periods = Vec::new();
            for candidate in series {
                let period = Period::of(granularity, candidate.created);
                if periods.contains(&period) {
                    continue;
                }
                if periods.len() == wanted as usize {
                    break;
                }
                periods.push(period);
                prop_assert!(kept.contains(candidate.id.as_str()), "{} is the newest of {period}", candidate.id);
            }
        }
        if let (Some(window), Some(newest)) = (rules.within, series.first()) {
            for candidate in series.iter().filter(|candidate| newest.created - candidate.created <= window) {
                prop_assert!(kept.contains(candidate.id.as_str()), "{} is within {window}", candidate.id);
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn pinned_and_keep_for_snapshots_are_always_kept(
            candidates in any_candidates(), policy in any_policy(), now in any_now(),
        ) {
            let decisions = plan(&candidates, &policy, now);
            let kept = kept(&decisions);
            for candidate in &candidates {
                if candidate.pinned || candidate.expires.is_some_and(|until| until > now) {
                    prop_assert!(kept.contains(candidate.id.as_str()), "{candidate:?}");
                }
            }
        }

        #[test]
        fn every_environment_keeps_its_newest_until_its_branch_has_been_gone_long_enough(
            candidates in any_candidates(), policy in any_policy(), now in any_now(),
        ) {
            let decisions = plan(&candidates, &policy, now);
            let kept = kept(&decisions);
            for snapshots in environments(&candidates).values() {
                let newest = snapshots[0];
                if gone_for_good(newest, &policy, now) {
                    for candidate in snapshots {
                        let held = candidate.pinned || candidate.expires.is_some_and(|until| until > now);
                        prop_assert_eq!(kept.contains(candidate.id.as_str()), held, "{:?}", candidate);
                    }
                } else {
                    prop_assert!(kept.contains(newest.id.as_str()), "{newest:?}");
                }
            }
        }

        #[test]
        fn every_decision_gives_reasons_that_agree_with_it(
            candidates in any_candidates(), policy in any_policy(), now in any_now(),
        ) {
            let decisions = plan(&candidates, &policy, now);
            prop_assert_eq!(decisions.len(), candidates.len());
            let ids: BTreeSet<&str> = decisions.iter().map(|decision| decision.id.as_str()).collect();
            prop_assert_eq!(ids.len(), candidates.len(), "one decision per snapshot");
            for decision in &decisions {
                prop_assert!(!decision.reasons.is_empty(), "{decision:?}");
                prop_assert!(decision.reasons.iter().all(|reason| reason.keeps() == decision.keep), "{decision:?}");
            }
        }

        #[test]
        fn the_kept_set_satisfies_every_rule(
            candidates in any_candidates(), policy in any_policy(), now in any_now(),
        ) {
            let decisions = plan(&candidates, &policy, now);
            let kept = kept(&decisions);
            for snapshots in environments(&candidates).values() {
                let newest = snapshots[0];
                if gone_for_good(newest, &policy, now) {
                    continue;
                }
                let of = |wanted: &[Trigger]| -> Vec<&Candidate> {
                    snapshots.iter().copied().filter(|candidate| wanted.contains(&candidate.trigger)).collect()
                };
                check_series(&of(&[Trigger::Schedule]), policy.automated_rules(newest.env_type), &kept)?;
                check_series(&of(&[Trigger::PreMerge, Trigger::PrePush]), &policy.hooks, &kept)?;
                let limit = policy.manual_limit.get(&newest.env_type).map_or(usize::MAX, |&limit| limit as usize);
                for candidate in of(&[Trigger::Manual]).into_iter().take(limit) {
                    prop_assert!(kept.contains(candidate.id.as_str()), "{candidate:?} is within the manual limit");
                }
                for candidate in of(&[Trigger::Safety]) {
                    if add_days(candidate.created, policy.safety_days) > now {
                        prop_assert!(kept.contains(candidate.id.as_str()), "{candidate:?} is a fresh safety snapshot");
                    }
                }
            }
        }

        #[test]
        fn nothing_is_kept_without_a_true_reason(
            candidates in any_candidates(), policy in any_policy(), now in any_now(),
        ) {
            let decisions = plan(&candidates, &policy, now);
            let environments = environments(&candidates);
            for decision in decisions.iter().filter(|decision| decision.keep) {
                let candidate = candidates.iter().find(|candidate| candidate.id == decision.id).expect("a known id");
                let snapshots = &environments[candidate.env.as_str()];
                let newest = snapshots[0];
                let series = |series: Series| -> Vec<&Candidate> {
                    let triggers: &[Trigger] = match series {
                        Series::Automated => &[Trigger::Schedule],
                        Series::Hooks => &[Trigger::PreMerge, Trigger::PrePush],
                    };
                    snapshots.iter().copied().filter(|other| triggers.contains(&other.trigger)).collect()
                };
                let rules = |series: Series| match series {
                    Series::Automated => *policy.automated_rules(newest.env_type),
                    Series::Hooks => policy.hooks,
                };
                for reason in &decision.reasons {
                    let holds = match *reason {
                        Reason::Pinned => candidate.pinned,
                        Reason::KeepFor(until) => candidate.expires == Some(until) && until > now,
                        Reason::Newest => newest.id == candidate.id && !gone_for_good(newest, &policy, now),
                        Reason::Last { series: name, rank } => {
                            rank <= rules(name).last && series(name).get(rank as usize - 1).map(|c| &c.id) == Some(&candidate.id)
                        }
                        Reason::Period { series: name, period } => {
                            let granularity = granularity(&period);
                            let wanted = rules(name).calendar().into_iter().find(|rule| rule.0 == granularity).map_or(0, |rule| rule.1);
                            let mut periods: Vec<Period> =
                                series(name).iter().map(|other| Period::of(granularity, other.created)).collect();
                            periods.dedup();
                            let newest_of_period = series(name).into_iter().find(|other| Period::of(granularity, other.created) == period);
                            newest_of_period.is_some_and(|first| first.id == candidate.id)
                                && periods.iter().position(|other| *other == period).is_some_and(|place| place < wanted as usize)
                        }
                        Reason::Within { series: name, window } => {
                            rules(name).within == Some(window)
                                && series(name).first().is_some_and(|first| first.created - candidate.created <= window)
                        }
                        Reason::ManualLimit { rank, limit } => {
                            limit == policy.manual_limit.get(&newest.env_type).copied()
                                && limit.is_none_or(|limit| rank <= limit)
                                && series_of_manual(snapshots).get(rank as usize - 1) == Some(&candidate.id.as_str())
                        }
                        Reason::SafetyFresh(until) => {
                            candidate.trigger == Trigger::Safety
                                && until == add_days(candidate.created, policy.safety_days)
                                && until > now
                        }
                        Reason::NoRule
                        | Reason::OverManualLimit { .. }
                        | Reason::SafetyExpired { .. }
                        | Reason::BranchGone { .. } => false,
                    };
                    prop_assert!(holds, "{reason:?} does not hold for {candidate:?}");
                }
            }
        }

        #[test]
        fn the_plan_depends_on_the_snapshots_not_their_order(
            (candidates, shuffled) in any_candidates().prop_flat_map(|candidates| {
                (Just(candidates.clone()), Just(candidates).prop_shuffle())
            }),
            policy in any_policy(),
            now in any_now(),
        ) {
            let decisions = plan(&candidates, &policy, now);
            prop_assert_eq!(&plan(&candidates, &policy, now), &decisions);
            prop_assert_eq!(&plan(&shuffled, &policy, now), &decisions);
        }
    }

    fn granularity(period: &Period) -> Granularity {
        match period {
            Period::Hour { .. } => Granularity::Hour,
            Period::SixHours { .. } => Granularity::SixHours,
            Period::Day(_) => Granularity::Day,
            Period::Week(_) => Granularity::Week,
            Period::Month { .. } => Granularity::Month,
            Period::Year(_) => Granularity::Year,
        }
    }

    fn series_of_manual<'a>(snapshots: &[&'a Candidate]) -> Vec<&'a str> {
        snapshots.iter().filter(|candidate| candidate.trigger == Trigger::Manual).map(|c| c.id.as_str()).collect()
    }
}
