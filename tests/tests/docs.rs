//! The documentation is the project's own: every relative link in the README
//! and `docs/` leads to a file of the repository, and nothing (pages or
//! code) points at material a person who clones it does not have.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The README and every Markdown page under `docs/`.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut folders = vec![root().join("docs")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    pages
}

/// The targets of `[text](target)` links, without their `#fragment`.
fn link_targets(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target))
        .map(|target| target.split('#').next().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn every_relative_link_leads_to_a_file_of_the_repository() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in link_targets(&text) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let resolved = page.parent().unwrap().join(&target);
            let inside = resolved
                .canonicalize()
                .is_ok_and(|path| path.starts_with(root().canonicalize().unwrap()));
            if !inside {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(
        checked > 20,
        "the pages link to each other ({checked} links)"
    );
    assert!(
        broken.is_empty(),
        "links that lead nowhere in the repository: {broken:#?}"
    );
}

/// Every text file a clone gets that may cite something: pages, code,
/// scripts, the template (this file names the citations it looks for).
fn sources() -> Vec<PathBuf> {
    let mut files = pages();
    let mut folders: Vec<PathBuf> = [
        "shared",
        "functions",
        "admin",
        "explorer",
        "bench",
        "tests",
        "scripts",
        "infra",
        "localstack",
    ]
    .iter()
    .map(|folder| root().join(folder))
    .collect();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() && name != "target" && !name.starts_with('.') {
                folders.push(path);
            } else if ["rs", "py", "yaml", "yml", "sh", "toml"]
                .iter()
                .any(|e| name.ends_with(&format!(".{e}")))
            {
                files.push(path);
            }
        }
    }
    files.retain(|file| !file.ends_with("tests/tests/docs.rs"));
    files
}

#[test]
fn nothing_cites_material_outside_the_repository() {
    let mut citing = Vec::new();
    let sources = sources();
    assert!(
        sources.len() > 100,
        "the walk found the code ({} files)",
        sources.len()
    );
    for file in sources {
        let text = std::fs::read_to_string(&file).unwrap().to_lowercase();
        let mut outside: Vec<String> = ["../shared", "design.md", "contract invariant"]
            .map(String::from)
            .to_vec();
        outside.extend((1..10).map(|n| format!("issue {n}")));
        for cited in outside {
            if text.contains(&cited) {
                citing.push(format!("{}: {cited:?}", file.display()));
            }
        }
    }
    assert!(citing.is_empty(), "a clone has none of these: {citing:#?}");
}

#[test]
fn the_readme_links_every_page_of_docs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            readme.contains(&format!("](docs/{name})"))
                || readme.contains(&format!("](docs/{name}/)")),
            "the README's table of pages names docs/{name}"
        );
    }
}
