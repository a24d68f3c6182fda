//! The vocabulary of reconciliation: situations, actions, stages (reference §2–§3).

use std::fmt;

/// The thirteen situations, in the order `situationSummary` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Situation {
    SourceIgnored,
    FoundAlreadyLinked,
    Unqualified,
    Absent,
    TargetIgnored,
    Missing,
    AllGone,
    Unassigned,
    Ambiguous,
    Confirmed,
    LinkOnly,
    SourceMissing,
    Found,
}

impl Situation {
    pub const ALL: [Situation; 13] = [
        Situation::SourceIgnored,
        Situation::FoundAlreadyLinked,
        Situation::Unqualified,
        Situation::Absent,
        Situation::TargetIgnored,
        Situation::Missing,
        Situation::AllGone,
        Situation::Unassigned,
        Situation::Ambiguous,
        Situation::Confirmed,
        Situation::LinkOnly,
        Situation::SourceMissing,
        Situation::Found,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Situation::SourceIgnored => "SOURCE_IGNORED",
            Situation::FoundAlreadyLinked => "FOUND_ALREADY_LINKED",
            Situation::Unqualified => "UNQUALIFIED",
            Situation::Absent => "ABSENT",
            Situation::TargetIgnored => "TARGET_IGNORED",
            Situation::Missing => "MISSING",
            Situation::AllGone => "ALL_GONE",
            Situation::Unassigned => "UNASSIGNED",
            Situation::Ambiguous => "AMBIGUOUS",
            Situation::Confirmed => "CONFIRMED",
            Situation::LinkOnly => "LINK_ONLY",
            Situation::SourceMissing => "SOURCE_MISSING",
            Situation::Found => "FOUND",
        }
    }

    pub fn parse(s: &str) -> Option<Situation> {
        Situation::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The default action when no policy matches (contract §4: IGNORE for SOURCE_IGNORED,
    /// TARGET_IGNORED and ALL_GONE; the reference's default table otherwise).
    pub fn default_action(self) -> Action {
        match self {
            Situation::Confirmed | Situation::Found => Action::Update,
            Situation::Absent => Action::Create,
            Situation::Unqualified => Action::Delete,
            Situation::SourceIgnored | Situation::TargetIgnored | Situation::AllGone => {
                Action::Ignore
            }
            Situation::FoundAlreadyLinked
            | Situation::Ambiguous
            | Situation::Missing
            | Situation::Unassigned
            | Situation::SourceMissing
            | Situation::LinkOnly => Action::Exception,
        }
    }
}

impl fmt::Display for Situation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ten actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Update,
    Delete,
    Link,
    Unlink,
    Exception,
    Ignore,
    Report,
    NoReport,
    Async,
}

impl Action {
    /// Every action, in the order of the run statistics' `situationActions` cells.
    pub const ALL: [Action; 10] = [
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Link,
        Action::Unlink,
        Action::Exception,
        Action::Ignore,
        Action::Report,
        Action::NoReport,
        Action::Async,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "CREATE",
            Action::Update => "UPDATE",
            Action::Delete => "DELETE",
            Action::Link => "LINK",
            Action::Unlink => "UNLINK",
            Action::Exception => "EXCEPTION",
            Action::Ignore => "IGNORE",
            Action::Report => "REPORT",
            Action::NoReport => "NOREPORT",
            Action::Async => "ASYNC",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Run stages with their fixed descriptions (reference §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    ActiveInitialized,
    ActiveQueryEntries,
    ActiveReconcilingSource,
    ActiveReconcilingTarget,
    ActiveLinkCleanup,
    ActiveProcessingResults,
    ActiveCanceling,
    CompletedSuccess,
    CompletedCanceled,
    CompletedFailed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::ActiveInitialized => "ACTIVE_INITIALIZED",
            Stage::ActiveQueryEntries => "ACTIVE_QUERY_ENTRIES",
            Stage::ActiveReconcilingSource => "ACTIVE_RECONCILING_SOURCE",
            Stage::ActiveReconcilingTarget => "ACTIVE_RECONCILING_TARGET",
            Stage::ActiveLinkCleanup => "ACTIVE_LINK_CLEANUP",
            Stage::ActiveProcessingResults => "ACTIVE_PROCESSING_RESULTS",
            Stage::ActiveCanceling => "ACTIVE_CANCELING",
            Stage::CompletedSuccess => "COMPLETED_SUCCESS",
            Stage::CompletedCanceled => "COMPLETED_CANCELED",
            Stage::CompletedFailed => "COMPLETED_FAILED",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Stage::ActiveInitialized => "initialized",
            Stage::ActiveQueryEntries => "querying sets of entries to reconcile",
            Stage::ActiveReconcilingSource => "reconciling source entries",
            Stage::ActiveReconcilingTarget => "reconciling target entries",
            Stage::ActiveLinkCleanup => "link clean-up",
            Stage::ActiveProcessingResults => "processing reconciling results",
            Stage::ActiveCanceling => "aborting reconciling",
            Stage::CompletedSuccess => "reconciliation completed.",
            Stage::CompletedCanceled => "reconciliation aborted.",
            Stage::CompletedFailed => "reconciliation failed",
        }
    }

    pub fn is_completed(self) -> bool {
        matches!(
            self,
            Stage::CompletedSuccess | Stage::CompletedCanceled | Stage::CompletedFailed
        )
    }

    /// `state` is a pure function of `stage`.
    pub fn state(self) -> &'static str {
        match self {
            Stage::CompletedSuccess => "SUCCESS",
            Stage::CompletedCanceled => "CANCELED",
            Stage::CompletedFailed => "FAILED",
            _ => "ACTIVE",
        }
    }

    /// Applies the transition rules: completed stages are final; after a cancel request every
    /// active stage reads as ACTIVE_CANCELING and every completed one as COMPLETED_CANCELED.
    pub fn transition(self, to: Stage, canceled: bool) -> Stage {
        if self.is_completed() {
            return self;
        }
        if canceled {
            return if to.is_completed() {
                Stage::CompletedCanceled
            } else {
                Stage::ActiveCanceling
            };
        }
        to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Situation::ALL {
            assert_eq!(Situation::parse(s.as_str()), Some(s));
        }
        assert_eq!(Action::parse("NOREPORT"), Some(Action::NoReport));
        assert_eq!(Action::parse("noreport"), None);
    }

    #[test]
    fn stage_rules() {
        let s = Stage::ActiveReconcilingSource;
        assert_eq!(
            s.transition(Stage::ActiveReconcilingTarget, true),
            Stage::ActiveCanceling
        );
        assert_eq!(
            s.transition(Stage::CompletedSuccess, true),
            Stage::CompletedCanceled
        );
        assert_eq!(
            Stage::CompletedFailed.transition(Stage::ActiveInitialized, false),
            Stage::CompletedFailed
        );
        assert_eq!(
            Stage::CompletedSuccess.description(),
            "reconciliation completed."
        );
        assert_eq!(
            Stage::CompletedFailed.description(),
            "reconciliation failed"
        );
    }
}
