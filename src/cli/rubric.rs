//! `canarist rubric check`: validate rubric files and compare them with the lock file.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::rubric::{Lock, Rubric, RubricError, compare, load_dir, load_file};

#[derive(Debug, clap::Subcommand)]
pub enum RubricCommand {
    /// Validate rubric files and compare them with the lock file.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Rubric files to check (instead of every file in `--dir`); compared with the lock file
    /// beside the first one (or `--lock`), which is never rewritten in this form.
    #[arg(conflicts_with_all = ["dir", "update"])]
    pub files: Vec<PathBuf>,
    /// Folder of rubric files (`*.yaml` directly inside it; `judges/` holds shared judges).
    #[arg(long, default_value = "rubrics")]
    pub dir: PathBuf,
    /// Lock file; defaults to `<dir>/canarist.lock`.
    #[arg(long)]
    pub lock: Option<PathBuf>,
    /// Rewrite the lock file (refused while a rubric changed without a version bump).
    #[arg(long)]
    pub update: bool,
}

/// Loads and validates `files`, reporting the problems of all of them together.
fn load_files(files: &[PathBuf]) -> Result<Vec<Rubric>, RubricError> {
    let mut rubrics = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match load_file(file) {
            Ok(r) => rubrics.push(r),
            Err(RubricError::Invalid(p)) => problems.extend(p),
            Err(e) => return Err(e),
        }
    }
    if problems.is_empty() {
        Ok(rubrics)
    } else {
        Err(RubricError::Invalid(problems))
    }
}

pub async fn run(cmd: RubricCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RubricCommand::Check(args) => {
            let (code, out) = check(&args)?;
            print!("{out}");
            Ok(code)
        }
    }
}

/// `canarist rubric check`: the exit code and what to print. Validation problems and lock
/// violations are reported in the output with a failing exit code; I/O errors are `Err`.
pub fn check(args: &CheckArgs) -> anyhow::Result<(ExitCode, String)> {
    use std::fmt::Write as _;
    let by_file = !args.files.is_empty();
    let lock_path = args
        .lock
        .clone()
        .unwrap_or_else(|| match args.files.first() {
            Some(f) => f
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("canarist.lock"),
            None => args.dir.join("canarist.lock"),
        });
    let loaded = if by_file {
        load_files(&args.files)
    } else {
        load_dir(&args.dir)
    };
    let what = if by_file {
        format!("{} file(s)", args.files.len())
    } else {
        args.dir.display().to_string()
    };
    let rubrics = match loaded {
        Ok(r) => r,
        Err(RubricError::Invalid(problems)) => {
            let mut out = String::new();
            for p in &problems {
                let _ = writeln!(out, "{p}");
            }
            let _ = writeln!(out, "{} problem(s) in {what}", problems.len());
            return Ok((ExitCode::FAILURE, out));
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = String::new();
    let existing = Lock::read(&lock_path)?;
    let mut lines = compare(existing.as_ref().unwrap_or(&Lock::default()), &rubrics);
    if by_file {
        // Only the files named: the lock's other rubrics are not "removed".
        lines.retain(|l| rubrics.iter().any(|r| r.id == l.id));
    }
    for l in &lines {
        let _ = writeln!(out, "{l}");
    }
    let violations = lines.iter().filter(|l| l.status.is_violation()).count();
    if violations > 0 {
        let _ = writeln!(
            out,
            "error: {violations} rubric(s) changed without a version bump; scores from different contents must not be pooled. Bump `version` and run with --update."
        );
        return Ok((ExitCode::FAILURE, out));
    }
    let stale = lines.iter().any(|l| l.status.is_stale());
    if by_file {
        if existing.is_some() && stale {
            let _ = writeln!(out, "note: {} is out of date", lock_path.display());
        }
    } else if args.update || existing.is_none() {
        Lock::from_rubrics(&rubrics).write(&lock_path)?;
        let _ = writeln!(
            out,
            "wrote {} ({} rubrics)",
            lock_path.display(),
            rubrics.len()
        );
    } else if stale {
        let _ = writeln!(
            out,
            "note: {} is out of date; run with --update",
            lock_path.display()
        );
    }
    let _ = writeln!(out, "ok: {} rubric(s) valid", rubrics.len());
    Ok((ExitCode::SUCCESS, out))
}
