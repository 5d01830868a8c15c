//! `canarist completions SHELL` and `canarist man`: generated from the real command tree.

use std::process::Output;

fn canarist(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bash_completions_parse_source_and_complete_subcommands() {
    let out = canarist(&["completions", "bash"]);
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("canarist.bash");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Sourced, it registers a completion function that offers the subcommands.
    let script = format!(
        "source {}; COMP_WORDS=(canarist ro); COMP_CWORD=1; COMP_LINE='canarist ro'; COMP_POINT=11; \
         _canarist canarist ro canarist; printf '%s\\n' \"${{COMPREPLY[@]}}\"; complete -p canarist",
        file.display()
    );
    let run = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.lines().any(|l| l == "rollout"), "{stdout}");
    assert!(stdout.contains("-F _canarist canarist"), "{stdout}");

    for shell in ["zsh", "fish"] {
        let out = canarist(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("rollout"),
            "{shell}"
        );
    }
}

#[test]
fn man_page_renders() {
    let out = canarist(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH canarist"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("canarist.1");
    std::fs::write(&file, &out.stdout).unwrap();
    let rendered = std::process::Command::new("groff")
        .args(["-man", "-Tutf8"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    // grotty marks bold and underline by overstriking (`N\x08N`): keep the last of each.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&rendered.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    assert!(text.contains("NAME") && text.contains("rollout"), "{text}");
}
