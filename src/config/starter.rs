//! The commented `envsnap.toml` that `envsnap init` writes.

/// A starter `envsnap.toml`: the production branch and protected branches set, and
/// a commented-out example of every other key and of each kind of element. It
/// configures no element, so a fresh file snapshots nothing until one is uncommented.
pub const STARTER: &str = r#"# envsnap.toml: what envsnap snapshots in this repository, and when.
#
# Values may use {branch}: the current branch name made safe for database and
# file names (lowercase letters, digits and _), so that every branch gets its own
# database and data directory. Never write secrets here: ${VAR} takes a value
# from the environment ($${ writes a literal "${").
#
# Each clone may override any of this in .git/envsnap.local.toml (not committed).

# The production branch, and the branches that get a snapshot before a merge
# into them or a push to them. Patterns: * within one path component,
# ** across components, ? one character.
production = "main"
protected = ["main"]

# Where snapshots live. Default: .git/envsnap/, shared by all worktrees.
# repository = "../snapshots"

# Who may restore into production and delete snapshots. Default: everyone.
# admins = ["alice@example.com", "bob"]

# Commands run before and after a consistent snapshot, e.g. maintenance mode.
# pause = "bin/console maintenance:on"
# resume = "bin/console maintenance:off"

# Environment types by branch pattern. The production branch is always
# production; a branch that matches nothing is development.
# [environments]
# staging = ["staging", "release/*"]
# development = ["feature/**"]


# ---- Elements: the data of an environment ----

# A mount is a directory tree of files; a relative path starts at the
# repository root. exclude takes gitignore patterns, e.g. generated caches.
# [[mount]]
# name = "uploads"
# path = "var/uploads"
# exclude = ["styles/", "css/", "js/", "*.tmp"]

# A service is a database or other server, captured through its own dump tool.
# One example of each type:
# [[service]]
# name = "db"
# type = "postgresql"
# url = "postgresql://app:${DB_PASSWORD}@127.0.0.1:5432/app_{branch}"

# [[service]]
# name = "shop"
# type = "mysql"                  # MySQL and MariaDB
# url = "mysql://app:${MYSQL_PASSWORD}@127.0.0.1:3306/shop_{branch}"

# [[service]]
# name = "cache"
# type = "redis"
# url = "redis://127.0.0.1:6379/0"

# [[service]]
# name = "local"
# type = "sqlite"
# path = "var/data/{branch}.sqlite"

# Anything else: a command that writes a dump to its standard output, and one
# that restores it from its standard input.
# [[service]]
# name = "documents"
# type = "command"
# dump = "mongodump --archive --db=app_{branch}"
# restore = "mongorestore --archive --drop --nsInclude='app_{branch}.*'"
# extension = "archive"           # default "dump"


# ---- Retention: which snapshots `envsnap forget` keeps ----

# Without this table nothing expires. docs/RETENTION.md says what each rule keeps.
# [retention]
# preset = "essential"            # or "advanced", "premium"; or explicit rules:
# keep_last = 10
# keep_hourly = 24
# keep_daily = 7
# keep_weekly = 4
# keep_monthly = 6
# keep_yearly = 2
# keep_within = "3d"              # hours (h), days (d) or weeks (w)
# manual_limit = { production = 20, staging = 10, development = 5 }
# manual_over_limit = "refuse"    # or "drop-oldest"
# keep_for = 30                   # days a manual snapshot is kept when `backup --keep-for` is not given
# safety_days = 7                 # days a safety snapshot (taken before a restore) is kept
# deleted_branch_days = 30        # days a deleted branch's snapshots are kept


# ---- Schedule: automated snapshots, taken by `envsnap schedule run` ----

# `envsnap schedule install --cron` (or --systemd) runs `envsnap schedule run`.
# [schedule]
# cron = "0 3 * * *"              # minute hour day-of-month month day-of-week, local time
# branches = ["main"]
# live = true                     # false: pause the environment as `backup` does
"#;
