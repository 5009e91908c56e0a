//! How the domain's types are kept in SQLite: ids as integers, states as their text
//! values, times as RFC 3339 text ([`crate::domain::time::ts`], sortable as text).

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::domain::ids::{
    AmbassadorId, ContactId, ConversationId, DeliveryId, IssueId, MessageRowId, OutboxId, StoryId, SubscriberId,
};
use crate::domain::state::{
    ConversationStatus, DeliveryStatus, DeskEventKind, IssueStatus, MessageStatus, OutboxKind, OutboxStatus,
    StoryStatus, SubscriberStatus,
};
use crate::domain::time::{parse_ts, ts};
use crate::domain::{Category, Language};

macro_rules! sql_id {
    ($($t:ty),+) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.0))
            }
        }
        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(v).map(Self)
            }
        }
    )+};
}
sql_id!(MessageRowId, ConversationId, ContactId, OutboxId, SubscriberId, AmbassadorId, StoryId, IssueId, DeliveryId);

macro_rules! sql_text {
    ($($t:ty),+) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = v.as_str()?;
                <$t>::parse(s).ok_or_else(|| {
                    FromSqlError::Other(format!("unknown {} {s:?} in the database", stringify!($t)).into())
                })
            }
        }
    )+};
}
sql_text!(
    MessageStatus,
    SubscriberStatus,
    DeliveryStatus,
    IssueStatus,
    StoryStatus,
    OutboxStatus,
    OutboxKind,
    Category,
    ConversationStatus,
    DeskEventKind
);

impl ToSql for Language {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.code()))
    }
}

impl FromSql for Language {
    /// Unknown codes read as Dutch, the default language of every text.
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        Ok(Language::parse(v.as_str()?).unwrap_or(Language::Dutch))
    }
}

/// A time as a statement parameter.
pub(super) struct Ts(pub DateTime<Utc>);

impl ToSql for Ts {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(ts(self.0)))
    }
}

/// An optional time as a statement parameter.
pub(super) fn ts_opt(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(ts)
}

/// A time read from a column.
pub(super) struct Time(pub DateTime<Utc>);

impl FromSql for Time {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = v.as_str()?;
        parse_ts(s).map(Time).ok_or_else(|| FromSqlError::Other(format!("not a time: {s:?}").into()))
    }
}

/// Reads a time column.
pub(super) fn time(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    Ok(r.get::<_, Time>(i)?.0)
}

/// Reads an optional time column.
pub(super) fn time_opt(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    Ok(r.get::<_, Option<Time>>(i)?.map(|t| t.0))
}
