//! dfget: download a URL through the local dfdaemon. See `dfget --help`.

use clap::Parser as _;
use dfdaemon::dfget::{Args, exit, run};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::exit(exit::OK),
        Err(f) => {
            eprintln!("dfget: error: {}", f.message);
            std::process::exit(f.code);
        }
    }
}
