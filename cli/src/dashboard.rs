//! `conveyor dashboard`: the web dashboard on its own.

use std::net::SocketAddr;

use conveyor::inspect::Inspector;
use conveyor_dashboard::{check_exposure, Auth, Dashboard};

/// The command's arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The address to listen on. Another than loopback needs --token or --basic.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A bearer token to require (open the dashboard once with `?token=…` in a browser).
    #[arg(long, env = "CONVEYOR_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// `USER:PASSWORD` for HTTP basic authentication.
    #[arg(long, env = "CONVEYOR_DASHBOARD_BASIC", hide_env_values = true)]
    pub basic: Option<String>,
    /// Show only: no action (run, archive, delete, cancel, pause) is possible.
    #[arg(long)]
    pub read_only: bool,
}

impl Args {
    /// The authentication asked for; `Err` (bad usage) for a contradiction or an exposed
    /// address without any.
    pub fn auth(&self) -> Result<Auth, String> {
        let auth = match (&self.token, &self.basic) {
            (Some(_), Some(_)) => return Err("give --token or --basic, not both".into()),
            (Some(t), None) if t.len() < 16 => return Err("a --token has at least 16 characters".into()),
            (Some(t), None) => Auth::Bearer(t.clone()),
            (None, Some(b)) => match b.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    Auth::Basic { user: user.to_owned(), password: password.to_owned() }
                }
                _ => return Err("--basic takes USER:PASSWORD".into()),
            },
            (None, None) => Auth::None,
        };
        check_exposure(self.listen, !matches!(auth, Auth::None))?;
        Ok(auth)
    }
}

/// Serves until the process is stopped.
pub async fn serve(args: Args, auth: Auth, ins: Inspector) -> conveyor::Result<()> {
    let dashboard = Dashboard::new(ins).auth(auth).read_only(args.read_only);
    println!("dashboard on http://{}/{}", args.listen, if args.read_only { " (read-only)" } else { "" });
    dashboard.serve(args.listen).await.map_err(|e| conveyor::Error::InvalidOption {
        option: "listen",
        reason: format!("cannot serve on {}: {e}", args.listen),
    })
}
