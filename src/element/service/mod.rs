//! Services: databases and other servers, captured through their own dump interface.
//!
//! An adapter captures a service as one or more named *dump streams* (one for the
//! whole dump, or one per table so that unchanged tables deduplicate) and restores it
//! from the same streams. Streams go straight through the chunker into the store:
//! nothing is staged whole in memory or on disk. In a snapshot, a service is an element
//! whose tree holds one file per stream, so restore, diff, check and browsing treat it
//! like a mount.

pub mod command;
mod connection;
pub mod mysql;
pub mod postgresql;
mod process;
pub mod redis;
mod sql;
pub mod sqlite;

use std::io::Read;

pub use process::stop_tools;

use crate::config::{ResolvedService, ServiceAccess, ServiceKind};
use crate::error::{Error, Result};

/// Receives the dump streams of a capture. Streams may be added from several threads.
pub trait DumpSink: Sync {
    /// Stores the stream `name` (a file name such as `dump.sql` or `tables/users.sql`),
    /// reading `reader` to its end.
    fn add(&self, name: &str, reader: &mut dyn Read) -> Result<()>;
}

/// Gives back the dump streams of a captured service, in the order they were named.
pub trait DumpSource: Sync {
    /// The stream names.
    fn names(&self) -> Vec<String>;

    /// A reader of stream `name`, verified chunk by chunk as it is read.
    fn open(&self, name: &str) -> Result<Box<dyn Read + Send + '_>>;
}

/// One kind of service.
pub trait Service: Send + Sync {
    /// Where it is, for messages; never holds a password.
    fn address(&self) -> String;

    /// Whether there is data to capture (a database that does not exist yet has none,
    /// so a restore into it needs no safety snapshot of it).
    fn exists(&self) -> Result<bool> {
        Ok(true)
    }

    /// Captures the service at one point in time into `sink`.
    fn capture(&self, sink: &dyn DumpSink) -> Result<()>;

    /// Refuses, before anything is changed, a dump this service cannot load (e.g. one
    /// taken from a newer server version). A restore should call it for every service
    /// before it touches any element; [`Service::restore`] calls it again itself.
    fn check_restore(&self, _source: &dyn DumpSource) -> Result<()> {
        Ok(())
    }

    /// Replaces the service's data with the dump in `source`.
    fn restore(&self, source: &dyn DumpSource) -> Result<()>;

    /// How many sessions of other clients are connected to the data a restore
    /// replaces, which [`Service::restore`] ends (a database cannot be dropped under
    /// them); `None` for a service whose restore ends none.
    fn other_sessions(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Makes [`Service::restore`] give every object to the restoring user instead of
    /// the owners the dump names (`restore --no-owner`), for a server that lacks those
    /// roles. A service whose dumps name no owners ignores it.
    fn restore_without_owners(&mut self) {}
}

/// The adapter for a resolved `[[service]]`.
pub fn adapter(service: &ResolvedService) -> Result<Box<dyn Service>> {
    match (&service.kind, &service.access) {
        (ServiceKind::Command, ServiceAccess::Commands { dump, restore, extension }) => {
            Ok(Box::new(command::CommandService::new(&service.name, dump, restore, extension)))
        }
        (ServiceKind::Redis, ServiceAccess::Url(url)) => Ok(Box::new(redis::RedisService::new(&service.name, url)?)),
        (ServiceKind::Sqlite, ServiceAccess::File(path)) => {
            Ok(Box::new(sqlite::SqliteService::new(&service.name, path)))
        }
        (ServiceKind::Postgresql, ServiceAccess::Url(url)) => {
            Ok(Box::new(postgresql::PostgresService::new(&service.name, url)?))
        }
        (ServiceKind::Mysql, ServiceAccess::Url(url)) => Ok(Box::new(mysql::MysqlService::new(&service.name, url)?)),
        (kind, _) => Err(Error::ServiceUnsupported { name: service.name.clone(), kind: kind.as_str().to_owned() }),
    }
}
