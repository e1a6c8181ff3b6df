//! dfget's command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Download a URL through the local dfdaemon (peer-to-peer when a swarm has it).
#[derive(Debug, Parser)]
#[command(
    name = "dfget",
    version,
    about,
    after_help = "Exit codes: 0 ok, 1 failed, 2 bad input, 3 no dfdaemon, 4 origin error, 5 digest mismatch, 6 timeout, 7 back-to-source disabled, 8 output not writable."
)]
pub struct Args {
    /// URL to download (http:// or https://).
    pub url: String,
    /// Where to write the content; it appears only when complete and verified.
    #[arg(short = 'O', long = "output")]
    pub output: PathBuf,
    /// Expected digest of the whole content: sha256:<hex>.
    #[arg(long)]
    pub digest: Option<String>,
    /// Header sent to the origin, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Tag: downloads of the same URL with different tags are different tasks.
    #[arg(long, default_value = "")]
    pub tag: String,
    /// Application name, part of the task identity like the tag.
    #[arg(long, default_value = "")]
    pub application: String,
    /// Give up after this long (e.g. 30s, 10m, 2h).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2h")]
    pub timeout: Duration,
    /// Never fetch from the origin; fail if no peer has the content.
    #[arg(long)]
    pub disable_back_to_source: bool,
    /// Do not show a progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Print a summary line (size, rate, where the bytes came from) even when stderr is not a terminal.
    #[arg(short, long)]
    pub verbose: bool,
    /// The dfdaemon's download socket.
    #[arg(long, env = "DFGET_SOCKET")]
    pub socket: Option<PathBuf>,
}

impl Args {
    /// Headers as (name, value) pairs; an error names the bad one.
    pub fn parsed_headers(&self) -> Result<Vec<(String, String)>, String> {
        self.headers
            .iter()
            .map(|h| {
                let (name, value) = h.split_once(':').ok_or_else(|| format!("header {h:?} is not 'Name: value'"))?;
                let name = name.trim();
                if name.is_empty() {
                    return Err(format!("header {h:?} has no name"));
                }
                Ok((name.to_string(), value.trim().to_string()))
            })
            .collect()
    }
}
