//! The real-world corpus (tests/fixtures/corpus) through the pure parts: parse and
//! triage, no server needed.

use std::path::Path;

use outreach::domain::{Category, EmailAddress};
use outreach::inbox::parse::parse;
use outreach::inbox::triage::{classify, detect_automatic, detect_language};

use crate::helpers::corpus;

/// Files in the corpus's bounce folder that are not delivery reports, so rightly filed as
/// automatic mail rather than as bounces (never answered either way). Each was read.
const BOUNCE_FOLDER_NOT_DELIVERY_REPORTS: [&str; 4] = [
    // AOL feedback-loop abuse complaint: multipart/report; report-type=feedback-report
    // (ARF, RFC 5965). It reports mail as spam, not a failed delivery.
    "flanker-complaints-aol.eml",
    // Yahoo feedback-loop abuse complaint (ARF, report-type=feedback-report).
    "flanker-complaints-yahoo.eml",
    // ARF abuse report (report-type=feedback-report), Sisimai's RFC 5965 sample.
    "sisimai-arf-01.eml",
    // BitDefender, on the sending machine, tells the *recipient* that an infected message
    // addressed to them was deleted: a virus notice, not a report on mail the recipient sent.
    "spamassassin-VBOUNCE_MESSAGE-bug5884_att4343_kerbango.eml",
];

/// The .eml files below `dir`, counted without `eml_files`, so that a broken walker
/// cannot pass by reading fewer files.
fn count_eml(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                count_eml(&p)
            } else {
                usize::from(p.file_name().unwrap().to_string_lossy().ends_with(".eml"))
            }
        })
        .sum()
}

#[test]
fn corpus_mail_parses_and_automatic_mail_is_recognised() {
    let (dir, files) = corpus();
    let own = vec![EmailAddress::parse("contact@example.org").unwrap()];
    let mut unparsed = Vec::new();
    let mut answered = Vec::new();
    let mut bounce_not_bounce = Vec::new();
    let mut n = 0;
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        n += 1;
        let folder = f.parent().unwrap().file_name().unwrap().to_string_lossy().to_string();
        let Some(m) = parse(&raw) else {
            unparsed.push(f.display().to_string());
            if folder == "bounce" {
                bounce_not_bounce.push(format!("{}: not parsed", f.display()));
            }
            continue;
        };
        let _ = detect_language(&m);
        match detect_automatic(&m, &own) {
            None => {
                let _ = classify(&m);
                if matches!(folder.as_str(), "autoreply" | "bounce" | "list") {
                    answered.push(format!("{}: {:?} from {:?}", f.display(), m.subject, m.from));
                }
                if folder == "bounce" {
                    bounce_not_bounce.push(format!("{}: not recognised as automatic", f.display()));
                }
            }
            Some((category, rule)) if folder == "bounce" && category != Category::Bounce => {
                let name = f.file_name().unwrap().to_string_lossy();
                if !(category == Category::Automatic && BOUNCE_FOLDER_NOT_DELIVERY_REPORTS.contains(&name.as_ref())) {
                    bounce_not_bounce.push(format!("{}: filed as {category:?} ({rule})", f.display()));
                }
            }
            Some(_) => {}
        }
    }
    for name in BOUNCE_FOLDER_NOT_DELIVERY_REPORTS {
        assert!(dir.join("bounce").join(name).is_file(), "stale exception: bounce/{name} is not in the corpus");
    }
    let present = count_eml(&dir);
    assert_eq!(n, present, "read {n} corpus files, but {} holds {present} .eml files", dir.display());
    eprintln!("{n} corpus files; unparsed (to review): {unparsed:?}");
    assert!(unparsed.len() <= 3, "{unparsed:#?}");
    assert!(answered.is_empty(), "automatic mail that would be answered:\n{}", answered.join("\n"));
    assert!(
        bounce_not_bounce.is_empty(),
        "{} mails in the bounce folder are not filed as bounces:\n{}",
        bounce_not_bounce.len(),
        bounce_not_bounce.join("\n")
    );
}
