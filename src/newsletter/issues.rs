//! The life of an issue: made from the approved stories (on the schedule or by hand),
//! mailed to the coordinator as a proof, approved, sent, or cancelled, dropped or
//! skipped. The moves are checked by the store ([`crate::domain::state::IssueStatus`]).

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Ctx;
use super::render::IssueContent;
use super::send;
use crate::config::ProofDeadlineAction;
use crate::domain::Language;
use crate::domain::clean_text;
use crate::domain::ids::IssueId;
use crate::domain::state::{IssueStatus, NotNow, OutboxKind};
use crate::outbox::compose;
use crate::store::issues::Issue;
use crate::store::stories::Story;
use crate::store::{NewOutgoing, Store};

impl Ctx {
    /// The content of an issue made of these stories.
    pub fn content(&self, issue: Option<IssueId>, stories: Vec<Story>, now: DateTime<Utc>) -> IssueContent {
        let tz = self.settings.newsletter.timezone().unwrap_or(chrono_tz::Europe::Amsterdam);
        let local = now.with_timezone(&tz);
        let title = self.settings.newsletter.title.clone();
        let subject = match stories.first() {
            Some(s) => format!("{title}: {}", clean_text(&s.title)),
            None => title.clone(),
        };
        IssueContent {
            month0: chrono::Datelike::month0(&local),
            year: chrono::Datelike::year(&local),
            title,
            subject,
            stories,
            archive_url: self.archive_url(issue),
            from_address: self.contact_address(),
        }
    }

    /// The content of the next issue: the approved stories that no issue took yet, as
    /// [`Ctx::make_issue`] would take them. None when there are none.
    pub fn next_content(&self, st: Store<'_>, now: DateTime<Utc>) -> anyhow::Result<Option<IssueContent>> {
        let stories = st.stories_ready(self.settings.newsletter.max_stories)?;
        Ok((!stories.is_empty()).then(|| self.content(None, stories, now)))
    }

    /// The unsubscribe link a preview shows to someone who is not a subscriber (it
    /// unsubscribes no one).
    pub fn preview_unsubscribe_url(&self) -> String {
        format!("{}/unsubscribe/PREVIEW", self.base_url())
    }

    /// The content of an issue that was made.
    pub(crate) fn issue_content(&self, st: Store<'_>, issue: &Issue) -> anyhow::Result<IssueContent> {
        let mut stories = Vec::new();
        for id in st.issue_story_ids(issue.id)? {
            stories.extend(st.story(id)?);
        }
        let mut content = self.content(Some(issue.id), stories, issue.created_at);
        content.subject.clone_from(&issue.subject);
        Ok(content)
    }

    /// Makes an issue of the approved stories not yet published. Scheduled issues
    /// (`slot`) get a proof first when `[newsletter] proof` is on; others go out at once.
    /// With no stories nothing is made, and for a slot the coordinator is told.
    /// Idempotent per slot.
    pub fn make_issue(
        &self,
        st: Store<'_>,
        slot: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<MadeIssue> {
        if let Some(slot) = slot
            && let Some(existing) = st.issue_by_slot(slot)?
        {
            return Ok(MadeIssue::Exists(existing.id));
        }
        let stories = st.stories_ready(self.settings.newsletter.max_stories)?;
        if stories.is_empty() {
            return match slot {
                Some(slot) => self.skip_slot(st, slot, now).map(MadeIssue::Skipped),
                None => Ok(MadeIssue::NoStories),
            };
        }
        let ids: Vec<_> = stories.iter().map(|s| s.id).collect();
        let content = self.content(None, stories, now);
        let proof = slot.is_some() && self.settings.newsletter.proof;
        let status = if proof { IssueStatus::Proof } else { IssueStatus::New };
        let id = st.create_issue(&content.subject, status, slot, &ids, None, now)?;
        if proof {
            self.send_proof(st, id, now)?;
            Ok(MadeIssue::Proof(id))
        } else {
            let n = self.start_sending(st, id, "outreach newsletter send", now)?;
            Ok(MadeIssue::Sending(id, n))
        }
    }

    /// A scheduled slot without approved stories: recorded as skipped, coordinator told.
    fn skip_slot(&self, st: Store<'_>, slot: DateTime<Utc>, now: DateTime<Utc>) -> anyhow::Result<IssueId> {
        let id = st.create_issue("", IssueStatus::Skipped, Some(slot), &[], Some("no approved stories"), now)?;
        #[derive(Serialize)]
        struct Data {
            slot: String,
        }
        let tz = self.settings.newsletter.timezone()?;
        let body = self.templates.render(
            "notice/no_stories.nl.txt",
            &Data { slot: slot.with_timezone(&tz).format("%d-%m-%Y %H:%M").to_string() },
        )?;
        self.notify_coordinator(
            st,
            OutboxKind::NoticeNoStories,
            "Nieuwsbrief niet verstuurd: geen verhalen",
            body,
            Some(id),
            now,
        )?;
        tracing::info!(slot = %slot, "scheduled newsletter skipped: no approved stories");
        Ok(id)
    }

    /// Mails the proof of an issue to the coordinator.
    pub fn send_proof(&self, st: Store<'_>, issue_id: IssueId, now: DateTime<Utc>) -> anyhow::Result<()> {
        let issue = st.issue(issue_id)?.context("no such issue")?;
        let hours = self.settings.newsletter.proof_deadline_hours;
        let deadline = now + chrono::Duration::hours(i64::try_from(hours).unwrap_or(48));
        let Some(to) = self.coordinator() else {
            // Nobody to mail the proof to: it waits for `outreach newsletter approve`.
            tracing::warn!(
                issue = %issue_id,
                "no coordinator.address: the proof is not mailed; approve it with `outreach newsletter approve`"
            );
            st.set_proof(issue_id, None, None, deadline)?;
            return Ok(());
        };
        let content = self.issue_content(st, &issue)?;
        let skeleton = self.renderer.skeleton(&content, Language::Dutch)?;
        let (html, text) = skeleton.personalize(None, &self.archive_url(None));
        let tz = self.settings.newsletter.timezone()?;
        #[derive(Serialize)]
        struct Data<'a> {
            subject: &'a str,
            recipients: i64,
            deadline: String,
            deadline_action: &'a str,
            code: &'a str,
        }
        let code = proof_code();
        let intro = self.templates.render(
            "notice/proof.nl.txt",
            &Data {
                subject: &issue.subject,
                recipients: st.active_subscriber_count()?,
                deadline: deadline.with_timezone(&tz).format("%d-%m-%Y %H:%M").to_string(),
                deadline_action: match self.settings.newsletter.proof_deadline_action {
                    ProofDeadlineAction::Send => "vanzelf verstuurd",
                    ProofDeadlineAction::Drop => "niet verstuurd",
                },
                code: &code,
            },
        )?;
        let message_id = compose::new_message_id(&self.from);
        let subject = format!("[PROEF {issue_id}] {}", issue.subject);
        let raw = send::build_message(
            self,
            &send::Envelope {
                to: &to,
                to_name: None,
                subject: &subject,
                message_id: &message_id,
                unsubscribe_url: None,
            },
            &format!("{intro}{text}"),
            &html,
            now,
        )?;
        let mut mail =
            NewOutgoing::new(OutboxKind::Proof, message_id.clone(), self.from.email.to_string(), to.to_string(), raw);
        mail.issue_id = Some(issue_id);
        st.enqueue(&mail, now)?;
        st.set_proof(issue_id, Some(&message_id), Some(&code), deadline)?;
        tracing::info!(issue = %issue_id, "proof queued for the coordinator");
        Ok(())
    }

    /// The issue goes out: deliveries for every active subscriber. Returns how many.
    /// This renders the issue and writes a row per subscriber: the heavy part, done by the
    /// newsletter task or the CLI, never inside the inbox's filing transaction.
    pub fn start_sending(
        &self,
        st: Store<'_>,
        issue_id: IssueId,
        by: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        let issue = st.issue(issue_id)?.context("no such issue")?;
        let content = self.issue_content(st, &issue)?;
        let archive = self.renderer.skeleton(&content, Language::Dutch)?.personalize(None, &self.archive_url(None)).0;
        let domain = self.from.email.domain().to_string();
        let n = st.start_sending(issue_id, by, &archive, &domain, now)?;
        tracing::info!(issue = %issue_id, deliveries = n, by, "newsletter sending started");
        Ok(n)
    }

    /// Records that a person approved a proof (reply VERZENDEN or `newsletter approve`).
    /// Cheap: the send itself is started by [`Ctx::start_approved`] after the commit.
    pub fn approve(&self, st: Store<'_>, issue_id: IssueId, by: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        let issue = st.issue(issue_id)?.with_context(|| format!("there is no issue {issue_id}"))?;
        if issue.status != IssueStatus::Proof {
            return Err(NotNow(format!("issue {issue_id} is {}, not waiting for approval", issue.status)).into());
        }
        st.approve_issue(issue_id, by, now)?;
        tracing::info!(issue = %issue_id, by, "proof approved");
        Ok(())
    }

    /// Starts the send of every approved issue. Returns `(issue, deliveries)` per issue.
    pub fn start_approved(&self, st: Store<'_>, now: DateTime<Utc>) -> anyhow::Result<Vec<(IssueId, usize)>> {
        let mut started = Vec::new();
        for issue in st.issues_with_status(IssueStatus::Approved)? {
            let by = issue.approved_by.clone().unwrap_or_else(|| "approval".into());
            started.push((issue.id, self.start_sending(st, issue.id, &by, now)?));
        }
        Ok(started)
    }

    /// Cancels an issue (reply STOP or `newsletter cancel`): a proof is not sent; a
    /// sending issue stops (what went out stays out). Its unsent stories are free again.
    pub fn cancel(&self, st: Store<'_>, issue_id: IssueId, by: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        let issue = st.issue(issue_id)?.with_context(|| format!("there is no issue {issue_id}"))?;
        let note = match issue.status {
            IssueStatus::Sending => format!("cancelled by {by} while sending"),
            s if s.can_become(IssueStatus::Cancelled) => format!("cancelled by {by}"),
            s => {
                return Err(NotNow(format!(
                    "issue {issue_id} is {s}; only a proof or an issue being sent can be cancelled"
                ))
                .into());
            }
        };
        st.move_issue(issue_id, IssueStatus::Cancelled, &note, now)?;
        tracing::info!(issue = %issue_id, by, "newsletter cancelled");
        Ok(())
    }

    /// Proofs past their deadline are sent or dropped, as configured. Returns how many
    /// started sending.
    pub fn settle_proof_deadlines(&self, st: Store<'_>, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let mut n = 0;
        for issue in st.issues_with_status(IssueStatus::Proof)? {
            let Some(deadline) = issue.proof_deadline else { continue };
            if deadline > now {
                continue;
            }
            match self.settings.newsletter.proof_deadline_action {
                ProofDeadlineAction::Send => {
                    self.start_sending(st, issue.id, "proof deadline", now)?;
                    n += 1;
                }
                ProofDeadlineAction::Drop => {
                    st.move_issue(issue.id, IssueStatus::Dropped, "nobody answered the proof in time", now)?;
                    tracing::info!(issue = %issue.id, "proof unanswered; issue dropped");
                }
            }
        }
        Ok(n)
    }
}

/// A random one-time code for a proof: six digits, easy to type in an answer. Together
/// with the proof's Message-ID (which the answer must refer to) and the coordinator's
/// address, it is what makes an answer the coordinator's.
fn proof_code() -> String {
    use rand::Rng;
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// What [`Ctx::make_issue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MadeIssue {
    Proof(IssueId),
    Sending(IssueId, usize),
    Skipped(IssueId),
    NoStories,
    Exists(IssueId),
}
