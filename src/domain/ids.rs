//! Row identities as their own types, so a subscriber id cannot be passed where an issue
//! id is meant. Made from the store's rows; printed as the bare number.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! row_id {
    ($(#[$doc:meta] $name:ident),+ $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    )+};
}

row_id!(
    /// A filed inbound message (`messages.id`).
    MessageRowId,
    /// A conversation (`conversations.id`); also the number in `[MAO-n]`.
    ConversationId,
    /// A person who wrote to us (`contacts.id`).
    ContactId,
    /// An outgoing mail in the queue (`outbox.id`).
    OutboxId,
    /// A newsletter subscriber (`subscribers.id`).
    SubscriberId,
    /// An ambassador (`ambassadors.id`).
    AmbassadorId,
    /// A story (`stories.id`).
    StoryId,
    /// A newsletter issue (`issues.id`).
    IssueId,
    /// One copy of an issue for one subscriber (`deliveries.id`).
    DeliveryId,
);
