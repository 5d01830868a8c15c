//! `rubric`: rubric files (YAML) and everything about them that needs no network.
//!
//! Owns: the rubric format and its validation (`load`, every problem as `file:line: field:
//! message`), the content hash (`hash`), the lock file (`lock`; `canarist rubric check` is `cli::rubric`),
//! deterministic checks on both sides of a pair (`checks`; the tool-call checks in
//! `tool_checks`, over `capture::Answer`), the apply/sample decision (`select`),
//! judge prompt rendering (`prompt`) and reading the judge's answer (`verdict`).
//! Never: calls a judge, touches the network or the store; the judge worker (`judge`) does that
//! on top of this API. Fails closed: an invalid rubric is not loaded, an unreadable judge answer
//! is an abstention, never a score. The format is documented in `rubrics/README.md`.

mod checks;
mod hash;
mod load;
mod load_checks;
mod load_criteria;
mod lock;
mod model;
pub mod prompt;
mod select;
mod tool_checks;
mod verdict;
pub mod yaml;

pub use checks::{CheckOutcome, CheckReport, SideResult, answer_text, evaluate, run_checks};
pub use hash::{ContentHash, canonical, content_hash};
pub use load::{RubricError, load_dir, load_file, parse_rubric};
pub use load_checks::DEFAULT_REFUSAL_PHRASES;
pub use lock::{Lock, LockEntry, LockError, LockLine, LockStatus, compare};
pub use model::{
    Aggregate, AppliesTo, ArgumentExpect, CHECK_TYPES, Check, CheckKind, Criterion, Example,
    ExampleVerdict, JudgeModel, Judging, Label, LengthUnit, Mode, ReferenceSource, RefusalExpect,
    Rubric, Scale, Severity, TokenLimitField, is_reasoning_model,
};
pub use prompt::{
    JudgePrompt, Order, RenderError, TEMPLATE_VERSION, Target, answer_for_judge, conversation,
    metadata_string, render, render_pairwise, render_pointwise, render_reference, response_format,
    response_schema,
};
pub use select::{Selection, applies, sampled, select};
pub use verdict::{
    Abstain, JudgeAnswer, PairChoice, PairOutcome, ParseFailure, ParseFailureCode, Verdict,
    aggregate_panel, combine_pairwise, parse_answer,
};
pub use yaml::Problem;
