//! A small, safe Markdown subset for the HTML report's answers and reasons: fenced code blocks,
//! `inline code`, **bold**, bullet and numbered list items and paragraphs. Every character of
//! the input is escaped first ([`esc`]) and the only markup that can come out is the handful of
//! tags written here, so an answer holding `<script>` or `<img onerror>` prints as text.
//! Anything else (links, images, tables, raw HTML) stays literal text. Pure.

use super::html::esc;

/// `text` with `` `code` `` spans as `<code>` and `**bold**` as `<strong>`, escaped.
pub fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, part) in text.split('`').enumerate() {
        // Odd parts are inside backticks — unless the last backtick is unmatched.
        let unmatched = i == text.split('`').count() - 1 && i % 2 == 1;
        if i % 2 == 1 && !unmatched {
            out.push_str("<code>");
            out.push_str(&esc(part));
            out.push_str("</code>");
        } else {
            if unmatched {
                out.push('`');
            }
            out.push_str(&bold(&esc(part)));
        }
    }
    out
}

/// `**x**` → `<strong>x</strong>` over already escaped text (pairs only).
fn bold(escaped: &str) -> String {
    let parts: Vec<&str> = escaped.split("**").collect();
    if parts.len() < 3 {
        return escaped.to_owned();
    }
    let mut out = String::with_capacity(escaped.len() + 16);
    let pairs = (parts.len() - 1) / 2 * 2;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            if i <= pairs {
                out.push_str(if i % 2 == 1 { "<strong>" } else { "</strong>" });
            } else {
                out.push_str("**");
            }
        }
        out.push_str(p);
    }
    out
}

/// A whole answer as HTML blocks (see the module comment).
pub fn blocks(text: &str) -> String {
    let mut out = String::new();
    let mut para: Vec<&str> = Vec::new();
    let mut list: Option<&'static str> = None;
    let mut fence: Option<(String, Vec<&str>)> = None;
    let flush_para = |out: &mut String, para: &mut Vec<&str>| {
        if !para.is_empty() {
            out.push_str("<p>");
            out.push_str(
                &para
                    .iter()
                    .map(|l| inline(l))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            );
            out.push_str("</p>");
            para.clear();
        }
    };
    let close_list = |out: &mut String, list: &mut Option<&'static str>| {
        if let Some(tag) = list.take() {
            out.push_str(&format!("</{tag}>"));
        }
    };
    for line in text.lines() {
        if let Some((marker, body)) = &mut fence {
            if line.trim_start().starts_with(marker.as_str()) {
                out.push_str("<pre><code>");
                out.push_str(&esc(&body.join("\n")));
                out.push_str("</code></pre>");
                fence = None;
            } else {
                body.push(line);
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            flush_para(&mut out, &mut para);
            close_list(&mut out, &mut list);
            let marker: String = trimmed
                .chars()
                .take_while(|c| *c == '`' || *c == '~')
                .collect();
            fence = Some((marker, Vec::new()));
            continue;
        }
        let item = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
            .map(|b| ("ul", b))
            .or_else(|| {
                let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
                (digits > 0)
                    .then(|| trimmed[digits..].strip_prefix(". "))
                    .flatten()
                    .map(|b| ("ol", b))
            });
        match item {
            Some((tag, body)) => {
                flush_para(&mut out, &mut para);
                if list != Some(tag) {
                    close_list(&mut out, &mut list);
                    out.push_str(&format!("<{tag}>"));
                    list = Some(tag);
                }
                out.push_str("<li>");
                out.push_str(&inline(body));
                out.push_str("</li>");
            }
            None if trimmed.is_empty() => {
                flush_para(&mut out, &mut para);
                close_list(&mut out, &mut list);
            }
            None => {
                close_list(&mut out, &mut list);
                para.push(line);
            }
        }
    }
    if let Some((_, body)) = fence {
        // An unclosed fence: the rest is code, as Markdown renderers do.
        out.push_str("<pre><code>");
        out.push_str(&esc(&body.join("\n")));
        out.push_str("</code></pre>");
    }
    flush_para(&mut out, &mut para);
    close_list(&mut out, &mut list);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_answers_stays_text() {
        let html = blocks(
            "Hi <script>alert(1)</script>\n\n```json\n{\"a\": \"<b>\"}\n``` trailing\n- **one** `<i>`\n- two",
        );
        assert!(!html.contains("<script>") && !html.contains("<b>") && !html.contains("<i>"));
        assert!(
            html.contains("<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>"),
            "{html}"
        );
        assert!(
            html.contains("<pre><code>{&quot;a&quot;: &quot;&lt;b&gt;&quot;}</code></pre>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<ul><li><strong>one</strong> <code>&lt;i&gt;</code></li><li>two</li></ul>"
            ),
            "{html}"
        );
    }

    #[test]
    fn inline_code_and_unmatched_marks() {
        assert_eq!(
            inline("check `json_valid` failed"),
            "check <code>json_valid</code> failed"
        );
        assert_eq!(inline("a ` b"), "a ` b");
        assert_eq!(inline("**x** and **y"), "<strong>x</strong> and **y");
    }
}
