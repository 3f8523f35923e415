//! A small static file server for the web app, with the headers WebGPU pages need:
//! COOP `same-origin` + COEP `require-corp` make the page cross-origin isolated, which
//! SharedArrayBuffer audio rings require.

use std::path::{Component, Path, PathBuf};

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "css" => "text/css; charset=utf-8",
        "wav" => "audio/wav",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Maps a URL path to a file under `root`, refusing `..` and absolute components.
fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let mut out = root.to_path_buf();
    for comp in Path::new(path.trim_start_matches('/')).components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.is_dir() {
        out.push("index.html");
    }
    Some(out)
}

fn header(k: &str, v: &str) -> Result<tiny_http::Header, String> {
    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).map_err(|_| format!("bad header {k}"))
}

pub fn serve(root: &Path, addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    if !root.join("index.html").is_file() {
        return Err(format!("{} has no index.html", root.display()).into());
    }
    let server =
        tiny_http::Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("serving {} at http://{addr}/", root.display());
    // One thread per request: a client that stops reading a large body (a 128 MiB shard, the
    // wasm) must not stall every other client, and files stream from disk instead of memory.
    let root = root.to_path_buf();
    for req in server.incoming_requests() {
        let root = root.clone();
        std::thread::spawn(move || {
            let _ = respond(&root, req);
        });
    }
    Ok(())
}

fn respond(root: &Path, req: tiny_http::Request) -> Result<(), String> {
    let file = resolve(root, req.url()).filter(|p| p.is_file());
    match file.and_then(|p| std::fs::File::open(&p).ok().map(|f| (p, f))) {
        Some((p, f)) => {
            let resp = tiny_http::Response::from_file(f)
                .with_header(header("Content-Type", mime(&p))?)
                .with_status_code(200);
            req.respond(with_headers(resp)?).map_err(|e| e.to_string())
        }
        None => {
            let resp = tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404);
            req.respond(with_headers(resp)?).map_err(|e| e.to_string())
        }
    }
}

fn with_headers<R: std::io::Read>(
    resp: tiny_http::Response<R>,
) -> Result<tiny_http::Response<R>, String> {
    Ok(resp
        .with_header(header("Cross-Origin-Opener-Policy", "same-origin")?)
        .with_header(header("Cross-Origin-Embedder-Policy", "require-corp")?)
        .with_header(header("Cross-Origin-Resource-Policy", "same-origin")?)
        .with_header(header("Cache-Control", "no-cache")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_refuses_escapes() {
        let root = Path::new("/srv/www");
        assert_eq!(
            resolve(root, "/app.js?x=1"),
            Some(PathBuf::from("/srv/www/app.js"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/../../b"), None);
    }
}
