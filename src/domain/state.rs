//! Every state machine of the store as an enum: what a row may be, and which moves are
//! allowed. Each enum is stored as the text of [`as_str`](SubscriberStatus::as_str)
//! (the values databases already hold); the columns carry a `CHECK` on the same lists
//! (migration 0003). A move the table below does not allow is refused by the store.

use std::fmt;

use serde::Serialize;

/// Declares a text-valued enum: `as_str`, `parse`, `ALL`, `Display` and `Serialize`.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::parse(s).ok_or_else(|| {
                    let all: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("expected one of {}, found {s:?}", all.join(", "))
                })
            }
        }
    };
}

/// A move a state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {id} is {from}; it cannot become {to}")]
pub struct IllegalTransition {
    pub what: &'static str,
    pub id: i64,
    pub from: &'static str,
    pub to: &'static str,
}

/// An action that the present state of a thing does not allow, found before any state
/// machine was asked (someone else acted first, say). The message is for the CLI and the
/// log; the desk says it in words of its own, as for [`IllegalTransition`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotNow(pub String);

/// Whether an error says that the thing's state does not allow the action (now).
pub fn is_not_now(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<NotNow>() || c.is::<IllegalTransition>())
}

text_enum!(
    /// A filed message: `new` waits for a person, `done` needs nothing more.
    MessageStatus { New = "new", Done = "done" }
);

text_enum!(
    /// A newsletter subscriber: `pending -> active -> unsubscribed | bounced`.
    SubscriberStatus {
        /// Asked to subscribe; waits for the confirmation (double opt-in).
        Pending = "pending",
        Active = "active",
        Unsubscribed = "unsubscribed",
        /// Mail to them bounced for good (or too often).
        Bounced = "bounced",
    }
);

impl SubscriberStatus {
    /// Whether a subscriber may move from `self` to `to`.
    pub fn can_become(self, to: Self) -> bool {
        use SubscriberStatus::{Active, Bounced, Pending, Unsubscribed};
        matches!(
            (self, to),
            (Pending, Active | Unsubscribed | Bounced)
                | (Active, Unsubscribed | Bounced)
                // Someone who left, or whose mail bounced, asks again themselves.
                | (Unsubscribed | Bounced, Pending)
        )
    }
}

text_enum!(
    /// One copy of an issue for one subscriber.
    DeliveryStatus {
        Pending = "pending",
        /// Committed before the SMTP transaction starts.
        Sending = "sending",
        Sent = "sent",
        /// A 4xx or a connection error: tried again later.
        Retry = "retry",
        /// A 5xx, or too many attempts.
        Failed = "failed",
        /// A delivery report came back for it.
        Bounced = "bounced",
        /// Not sent: the subscriber left, or the issue was cancelled.
        Skipped = "skipped",
    }
);

text_enum!(
    /// A newsletter issue: `proof -> approved -> sending -> sent` (or `new -> sending`
    /// when sent by hand), ending `cancelled`, `dropped` or `skipped` instead.
    IssueStatus {
        /// Made by hand; goes out at once.
        New = "new",
        /// Mailed to the coordinator; waits for an answer or the deadline.
        Proof = "proof",
        /// The coordinator approved it; the newsletter task starts sending it.
        Approved = "approved",
        Sending = "sending",
        Sent = "sent",
        Cancelled = "cancelled",
        /// Nobody answered the proof in time.
        Dropped = "dropped",
        /// A scheduled slot without approved stories.
        Skipped = "skipped",
    }
);

impl IssueStatus {
    /// Whether an issue may move from `self` to `to`.
    pub fn can_become(self, to: Self) -> bool {
        use IssueStatus::{Approved, Cancelled, Dropped, New, Proof, Sending, Sent};
        matches!(
            (self, to),
            (Proof, Approved | Cancelled | Dropped | Sending)
                | (Approved, Sending | Cancelled)
                | (New, Sending | Cancelled)
                | (Sending, Sent | Cancelled)
                // `newsletter resend-missed` sends a finished issue to those it missed.
                | (Sent, Sending)
        )
    }

    /// Whether it still waits for a decision (a proof, or an approval being carried out).
    pub fn is_open(self) -> bool {
        matches!(self, IssueStatus::New | IssueStatus::Proof | IssueStatus::Approved)
    }
}

text_enum!(
    /// An ambassador's story: `submitted -> approved -> published`, or `rejected`.
    StoryStatus { Submitted = "submitted", Approved = "approved", Published = "published", Rejected = "rejected" }
);

impl StoryStatus {
    /// Whether a story may move from `self` to `to`.
    pub fn can_become(self, to: Self) -> bool {
        use StoryStatus::{Approved, Published, Rejected, Submitted};
        matches!(
            (self, to),
            (Submitted, Approved | Rejected) | (Approved, Published | Rejected | Submitted) | (Rejected, Submitted)
        )
    }
}

text_enum!(
    /// An outgoing mail in the queue: `queued -> sending -> sent | queued (retry) | failed`.
    OutboxStatus { Queued = "queued", Sending = "sending", Sent = "sent", Failed = "failed" }
);

text_enum!(
    /// What an outgoing mail is.
    OutboxKind {
        /// The RFC 3834 answer to a new conversation.
        AutoReply = "auto_reply",
        /// The circuit breaker tripped: one notice to the coordinator.
        NoticeBreaker = "notice_breaker",
        /// A scheduled issue had no stories.
        NoticeNoStories = "notice_no_stories",
        /// A mail looked like an answer that acts (a proof answer, consent) but proved
        /// nothing: the coordinator is told once.
        NoticeSuspect = "notice_suspect",
        /// The watched mailbox was recreated on the server (its UIDVALIDITY changed):
        /// the coordinator is told once per change.
        NoticeMailbox = "notice_mailbox",
        /// Logging in to the mailbox (OAuth2) has failed for too long: one notice.
        NoticeLogin = "notice_login",
        /// An issue mailed to the coordinator for approval.
        Proof = "proof",
        /// `newsletter preview --to`.
        Preview = "preview",
        /// The double opt-in mail.
        Confirm = "confirm",
        Welcome = "welcome",
        /// Confirms an unsubscribe.
        Unsubscribed = "unsubscribed",
        /// The coordinator's answer in a conversation (`inbox reply`, the desk).
        Answer = "answer",
        /// The daily list of what waits, to the coordinator.
        Digest = "digest",
        /// A one-time login link to the web desk.
        DeskLogin = "desk_login",
    }
);

text_enum!(
    /// A conversation, the coordinator's unit of work: `nieuw -> in behandeling ->
    /// afgehandeld`, back to `nieuw` when the person writes again.
    ConversationStatus {
        /// Waits for a person.
        New = "nieuw",
        /// Answered or being worked on.
        Open = "in behandeling",
        Done = "afgehandeld",
    }
);

impl ConversationStatus {
    /// Whether a conversation may move from `self` to `to`. Every move between the
    /// three is allowed (a person can write again at any time, a coordinator can close or
    /// reopen at any time); a move to the same status is not a move.
    pub fn can_become(self, to: Self) -> bool {
        self != to
    }

    /// Whether it waits for the coordinator.
    pub fn waits(self) -> bool {
        !matches!(self, ConversationStatus::Done)
    }
}

text_enum!(
    /// What the coordinator did in a conversation.
    DeskEventKind {
        /// An answer mailed through the outbox.
        Answer = "answer",
        /// An internal note, never mailed.
        Note = "note",
        Done = "done",
        Reopen = "reopen",
        /// Recategorised (its messages moved to another folder).
        Move = "move",
        /// Joined into another conversation.
        Merge = "merge",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_value_parses_back_to_its_variant() {
        for s in SubscriberStatus::ALL {
            assert_eq!(SubscriberStatus::parse(s.as_str()), Some(*s));
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(*s));
        }
        for s in IssueStatus::ALL {
            assert_eq!(IssueStatus::parse(s.as_str()), Some(*s));
        }
        for s in OutboxKind::ALL {
            assert_eq!(OutboxKind::parse(s.as_str()), Some(*s));
        }
        for s in ConversationStatus::ALL {
            assert_eq!(ConversationStatus::parse(s.as_str()), Some(*s));
        }
        for s in DeskEventKind::ALL {
            assert_eq!(DeskEventKind::parse(s.as_str()), Some(*s));
        }
        assert_eq!(StoryStatus::parse("nonsense"), None);
        assert!("sendin".parse::<DeliveryStatus>().unwrap_err().contains("sending"));
    }

    #[test]
    fn a_subscriber_who_left_comes_back_only_through_pending() {
        use SubscriberStatus::{Active, Bounced, Pending, Unsubscribed};
        assert!(Pending.can_become(Active));
        assert!(Unsubscribed.can_become(Pending));
        assert!(!Unsubscribed.can_become(Active));
        assert!(!Bounced.can_become(Active));
        assert!(!Active.can_become(Pending));
    }

    #[test]
    fn a_proof_goes_out_only_after_approval_or_deadline_and_an_ended_issue_stays_ended() {
        use IssueStatus::{Approved, Cancelled, Dropped, New, Proof, Sending, Sent, Skipped};
        assert!(Proof.can_become(Approved));
        assert!(Approved.can_become(Sending));
        assert!(Proof.can_become(Sending), "the deadline action `send`");
        assert!(Sent.can_become(Sending), "resend-missed");
        assert!(!Sent.can_become(Proof));
        assert!(!Cancelled.can_become(Sending));
        assert!(!Dropped.can_become(Approved));
        assert!(!Skipped.can_become(Sending));
        assert!(!New.can_become(Approved));
    }
}
