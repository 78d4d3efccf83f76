//! The shape of an `envsnap.toml` as serde reads it, before any check.
//!
//! Every top-level key is optional here, so that the same shape serves the shared
//! file and the per-clone override, which changes only what it names; defaults are
//! applied after the two are merged. Field order is the order that an "unknown key;
//! expected one of …" message lists.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::{EnvironmentType, OverLimit, RetentionPreset, ServiceKind};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Document {
    pub(super) production: Option<String>,
    pub(super) protected: Option<Vec<String>>,
    pub(super) repository: Option<PathBuf>,
    pub(super) admins: Option<Vec<String>>,
    pub(super) pause: Option<String>,
    pub(super) resume: Option<String>,
    pub(super) environments: Option<EnvironmentsTable>,
    pub(super) retention: Option<RetentionTable>,
    pub(super) schedule: Option<ScheduleTable>,
    #[serde(default)]
    pub(super) mount: Vec<MountTable>,
    #[serde(default)]
    pub(super) service: Vec<ServiceTable>,
}

/// `[environments]`, in the order written: the first matching pattern wins.
#[derive(Debug, Default)]
pub(super) struct EnvironmentsTable(pub(super) Vec<(EnvironmentType, Vec<String>)>);

impl<'de> Deserialize<'de> for EnvironmentsTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;

        impl<'de> Visitor<'de> for InOrder {
            type Value = EnvironmentsTable;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of environment types and branch patterns")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut rules = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    rules.push(entry);
                }
                Ok(EnvironmentsTable(rules))
            }
        }

        deserializer.deserialize_map(InOrder)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionTable {
    pub(super) preset: Option<RetentionPreset>,
    pub(super) keep_last: Option<u32>,
    pub(super) keep_hourly: Option<u32>,
    pub(super) keep_six_hourly: Option<u32>,
    pub(super) keep_daily: Option<u32>,
    pub(super) keep_weekly: Option<u32>,
    pub(super) keep_monthly: Option<u32>,
    pub(super) keep_yearly: Option<u32>,
    pub(super) keep_within: Option<String>,
    #[serde(default)]
    pub(super) manual_limit: BTreeMap<EnvironmentType, u32>,
    pub(super) manual_over_limit: Option<OverLimit>,
    pub(super) keep_for: Option<u32>,
    pub(super) safety_days: Option<u32>,
    pub(super) deleted_branch_days: Option<u32>,
    pub(super) production: Option<RulesTable>,
    pub(super) staging: Option<RulesTable>,
    pub(super) development: Option<RulesTable>,
}

/// The automated keep rules: at the top of `[retention]`, or in a table of their own
/// for one environment type (`[retention.staging]`). `RetentionTable` repeats these
/// fields rather than flatten this struct in, because serde's `flatten` disables
/// `deny_unknown_fields`, and a misspelt key must be an error that names its line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RulesTable {
    pub(super) preset: Option<RetentionPreset>,
    pub(super) keep_last: Option<u32>,
    pub(super) keep_hourly: Option<u32>,
    pub(super) keep_six_hourly: Option<u32>,
    pub(super) keep_daily: Option<u32>,
    pub(super) keep_weekly: Option<u32>,
    pub(super) keep_monthly: Option<u32>,
    pub(super) keep_yearly: Option<u32>,
    pub(super) keep_within: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleTable {
    pub(super) cron: String,
    pub(super) branches: Option<Vec<String>>,
    pub(super) live: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MountTable {
    pub(super) name: String,
    pub(super) path: String,
    #[serde(default)]
    pub(super) exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceTable {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) kind: ServiceKind,
    pub(super) url: Option<String>,
    pub(super) path: Option<String>,
    pub(super) dump: Option<String>,
    pub(super) restore: Option<String>,
    pub(super) extension: Option<String>,
}
