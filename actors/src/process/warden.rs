//! The warden: a tiny process that leads one upstream server's process
//! group and makes sure the group ends with it.
//!
//! `mcpvisor __warden GRACE_MS DAEMON_PID -- PROGRAM ARGS…` starts PROGRAM
//! (inheriting stdin, stdout and stderr, so the MCP pipes go straight
//! through) and then only waits for signals:
//! - the server exits: the rest of its group is ended, and the warden exits
//!   the way the server did (same code, or the same signal), so the daemon
//!   reads the server's own exit status;
//! - SIGTERM (from the daemon stopping the service, or from the kernel when
//!   the daemon dies: `PR_SET_PDEATHSIG`), SIGINT, SIGHUP or SIGQUIT: the
//!   group is ended.
//!
//! Ending the group is SIGTERM (and SIGCONT, in case it was frozen), then
//! SIGKILL once GRACE_MS have passed. As a child subreaper the warden adopts
//! every descendant a wrapper leaves behind, so `sh -c 'server & wait'` ends
//! completely too.

use std::ffi::OsString;

/// The first argument that selects the warden.
pub const ARG: &str = "__warden";

/// Runs the warden with its arguments (those after [`ARG`]); never returns.
#[cfg(target_os = "linux")]
pub fn run(args: Vec<OsString>) -> ! {
    match linux::run(args) {
        Ok(never) => match never {},
        Err(message) => {
            eprintln!("mcpvisor warden: {message}");
            std::process::exit(127)
        }
    }
}

/// Without Linux's process controls the warden only runs the program.
#[cfg(not(target_os = "linux"))]
pub fn run(args: Vec<OsString>) -> ! {
    let mut it = args.into_iter().skip_while(|a| a != "--").skip(1);
    let Some(program) = it.next() else {
        std::process::exit(127)
    };
    let status = std::process::Command::new(program).args(it).status();
    std::process::exit(status.ok().and_then(|s| s.code()).unwrap_or(127))
}

#[cfg(target_os = "linux")]
mod linux {
    use std::convert::Infallible;
    use std::ffi::OsString;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    struct Args {
        grace: Duration,
        daemon: libc::pid_t,
        program: OsString,
        rest: Vec<OsString>,
    }

    fn parse(args: Vec<OsString>) -> Result<Args, String> {
        let mut it = args.into_iter();
        let number = |v: Option<OsString>, what: &str| {
            v.and_then(|v| v.into_string().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("expected {what}"))
        };
        let grace = Duration::from_millis(number(it.next(), "GRACE_MS")?);
        let daemon = libc::pid_t::try_from(number(it.next(), "DAEMON_PID")?)
            .map_err(|_| "DAEMON_PID out of range".to_owned())?;
        if it.next().is_none_or(|sep| sep != "--") {
            return Err("expected -- before the program".into());
        }
        let program = it.next().ok_or("no program given")?;
        Ok(Args {
            grace,
            daemon,
            program,
            rest: it.collect(),
        })
    }

    fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
        // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in signals {
                libc::sigaddset(&mut set, *s);
            }
            set
        }
    }

    const ENDING: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

    pub fn run(args: Vec<OsString>) -> Result<Infallible, String> {
        let args = parse(args)?;
        let all = signal_set(&[
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGCHLD,
        ]);
        // SAFETY: plain process-control calls on this single-threaded process.
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong);
            // The daemon may have died before the death signal was armed.
            if libc::getppid() != args.daemon {
                return Err("the daemon is gone".into());
            }
        }
        let mut cmd = std::process::Command::new(&args.program);
        cmd.args(&args.rest);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let empty = signal_set(&[]);
                libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                Ok(())
            });
        }
        let server = cmd.spawn().map_err(|e| {
            format!(
                "cannot start `{}`: {e}",
                std::path::Path::new(&args.program).display()
            )
        })?;
        let server = server.id() as libc::pid_t;
        // The pipes are the server's alone: a server that closes its
        // stdout must be seen to close it, and one that dies must not leave
        // a reader of its stdin behind.
        release_stdio();
        let mut status: Option<libc::c_int> = None;
        loop {
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waits for one of the blocked signals.
            let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
            if sig == libc::SIGCHLD {
                reap(server, &mut status);
                if status.is_some() {
                    break;
                }
            } else if ENDING.contains(&sig) {
                break;
            }
        }
        end_group(args.grace, server, &mut status);
        exit_like(status)
    }

    /// Points stdin, stdout and stderr at /dev/null.
    fn release_stdio() {
        // SAFETY: opens /dev/null and duplicates it over our own fds 0-2.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                for fd in 0..=2 {
                    libc::dup2(null, fd);
                }
                if null > 2 {
                    libc::close(null);
                }
            }
        }
    }

    /// Reaps every exited child, noting the server's status.
    /// Returns false once no child is left.
    fn reap(server: libc::pid_t, status: &mut Option<libc::c_int>) -> bool {
        loop {
            let mut raw = 0;
            // SAFETY: non-blocking wait for any child.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid == server {
                *status = Some(raw);
            } else if pid == 0 {
                return true;
            } else if pid < 0 {
                return false;
            }
        }
    }

    /// SIGTERM (and SIGCONT) to the group, SIGKILL after `grace`.
    fn end_group(grace: Duration, server: libc::pid_t, status: &mut Option<libc::c_int>) {
        // SAFETY: signals our own group; the warden has SIGTERM blocked.
        unsafe {
            libc::kill(0, libc::SIGTERM);
            libc::kill(0, libc::SIGCONT);
        }
        let deadline = Instant::now() + grace;
        let chld = signal_set(&[libc::SIGCHLD]);
        while reap(server, status) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            let wait = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            };
            // SAFETY: waits for SIGCHLD with a timeout.
            unsafe { libc::sigtimedwait(&chld, std::ptr::null_mut(), &wait) };
        }
        if reap(server, status) {
            // Past the grace period: everyone goes, the warden last.
            kill_adopted();
            // SAFETY: SIGKILL to our own group, this process included.
            unsafe { libc::kill(0, libc::SIGKILL) };
        }
    }

    /// Adopted descendants that left the group (`setsid`) are ours to end too.
    fn kill_adopted() {
        let me = std::process::id();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(me) {
                // SAFETY: SIGKILL to one of our own children.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }

    /// Exits with the server's code, or dies of the server's signal.
    fn exit_like(status: Option<libc::c_int>) -> ! {
        let Some(raw) = status else {
            // Told to stop before the server ended on its own.
            std::process::exit(128 + libc::SIGTERM)
        };
        if libc::WIFEXITED(raw) {
            std::process::exit(libc::WEXITSTATUS(raw));
        }
        if libc::WIFSIGNALED(raw) {
            let sig = libc::WTERMSIG(raw);
            let one = signal_set(&[sig]);
            // SAFETY: restore the default action and let the signal through.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
                libc::raise(sig);
            }
            std::process::exit(128 + sig);
        }
        std::process::exit(1)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn arguments_parse() {
            let a = parse(
                ["1500", "42", "--", "sh", "-c", "x"]
                    .map(OsString::from)
                    .to_vec(),
            )
            .unwrap();
            assert_eq!(a.grace, Duration::from_millis(1500));
            assert_eq!(a.daemon, 42);
            assert_eq!(a.program, "sh");
            assert_eq!(a.rest, vec![OsString::from("-c"), OsString::from("x")]);
            assert!(parse(["x"].map(OsString::from).to_vec()).is_err());
            assert!(parse(["1", "2", "sh"].map(OsString::from).to_vec()).is_err());
        }
    }
}
