//! The fan's pages as HTML: one layout, small, no external assets, no
//! framework. The words come from `text`; the script and the styles are
//! inlined (and allowed by hash in the Content-Security-Policy).

use std::fmt::Write as _;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::Digest;

use super::text::Text;

pub const STYLE: &str = include_str!("page.css");
pub const SCRIPT: &str = include_str!("page.js");

/// What a page is allowed to load: its own inline style and script (by
/// hash), requests and form posts to this API, nothing else.
pub static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = |text: &str| STANDARD.encode(sha2::Sha256::digest(text.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; connect-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        hash(STYLE),
        hash(SCRIPT)
    )
});

/// Text made safe for HTML content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// How a page refreshes itself.
pub enum Refresh {
    /// Only without JavaScript (the script polls instead): after this many
    /// seconds, to this URL.
    WithoutScript(u64, String),
    /// Always: a hand-over to another site.
    Always(u64, String),
}

/// One page: its language, its one `h1`, what the script reads (`data-*`
/// on the body) and its main content (already HTML).
pub struct Page<'a> {
    pub text: &'static Text,
    pub heading: &'a str,
    pub refresh: Option<Refresh>,
    pub data: Vec<(&'static str, String)>,
    pub main: String,
    pub script: bool,
}

impl Page<'_> {
    pub fn html(&self) -> String {
        let mut out = String::with_capacity(8192);
        let _ = write!(
            out,
            "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <meta name=\"referrer\" content=\"no-referrer\"><title>{} – {}</title>",
            self.text.lang,
            escape(self.heading),
            escape(self.text.title)
        );
        match &self.refresh {
            Some(Refresh::WithoutScript(seconds, url)) => {
                let _ = write!(
                    out,
                    "<noscript><meta http-equiv=\"refresh\" content=\"{seconds};url={}\"></noscript>",
                    escape(url)
                );
            }
            Some(Refresh::Always(seconds, url)) => {
                let _ = write!(
                    out,
                    "<meta http-equiv=\"refresh\" content=\"{seconds};url={}\">",
                    escape(url)
                );
            }
            None => {}
        }
        let _ = write!(out, "<style>{STYLE}</style></head><body");
        for (name, value) in &self.data {
            let _ = write!(out, " data-{name}=\"{}\"", escape(value));
        }
        let _ = write!(
            out,
            "><main><h1>{}</h1>{}\
             <p id=\"announce\" class=\"visually-hidden\" role=\"status\" aria-live=\"polite\"></p></main>",
            escape(self.heading),
            self.main
        );
        if self.script {
            let _ = write!(out, "<script>{SCRIPT}</script>");
        }
        out.push_str("</body></html>");
        out
    }
}

/// A paragraph of plain text.
pub fn para(text: &str) -> String {
    format!("<p>{}</p>", escape(text))
}

/// An alert: a refusal or a failure, read out at once.
pub fn alert(text: &str) -> String {
    format!("<p role=\"alert\">{}</p>", escape(text))
}

/// A form posting hidden fields with one button.
pub fn form(
    id: Option<&str>,
    action: &str,
    fields: &[(&str, String)],
    button: &str,
    secondary: bool,
) -> String {
    let mut out = String::new();
    let id = id.map(|id| format!(" id=\"{id}\"")).unwrap_or_default();
    let _ = write!(
        out,
        "<form{id} method=\"post\" action=\"{}\">",
        escape(action)
    );
    for (name, value) in fields {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        );
    }
    let class = if secondary {
        " class=\"secondary\""
    } else {
        ""
    };
    let _ = write!(
        out,
        "<button type=\"submit\"{class}>{}</button></form>",
        escape(button)
    );
    out
}

/// A link styled as the page's main action.
pub fn button_link(href: &str, label: &str) -> String {
    format!(
        "<p><a class=\"button\" href=\"{}\">{}</a></p>",
        escape(href),
        escape(label)
    )
}
