//! Upstream server processes: each in a process group of its own, stopped
//! as a group, and never outliving the daemon.
//!
//! An MCP server is often started through a wrapper (`sh -c`, `npx`, `uvx`)
//! whose children do the real work, so stopping "the child" is not enough:
//! every launch gets a fresh process group, and stopping it signals the
//! whole group — SIGTERM, then SIGKILL once [`UpstreamProcess`]'s grace
//! period is over.
//!
//! A group can only be stopped by someone still alive, and mcpvisor may be
//! killed outright. On Linux each server therefore runs under a small
//! *warden* (this executable again, see [`warden`]): it leads the group, is
//! told of the daemon's death by `PR_SET_PDEATHSIG`, adopts orphaned
//! descendants as a subreaper, and ends the group itself. Where no warden
//! is configured the server leads its own group and is given the death
//! signal directly.
//!
//! A service never has two instances: a launch first takes its
//! [`ProcessSlot`], which the previous instance hands back only once its
//! whole group is gone.

pub mod warden;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The executable that runs [`warden::run`], when the daemon has one.
static WARDEN: OnceLock<PathBuf> = OnceLock::new();

/// Process groups launched and not yet known to be gone.
static LIVE_GROUPS: AtomicUsize = AtomicUsize::new(0);
static GROUP_GONE: OnceLock<Notify> = OnceLock::new();

fn group_gone() -> &'static Notify {
    GROUP_GONE.get_or_init(Notify::new)
}

/// Runs every server launched from now on under `program`'s warden
/// (`program __warden …`); the daemon passes its own executable.
pub fn use_warden(program: PathBuf) {
    let _ = WARDEN.set(program);
}

/// Whether servers run under a warden.
pub fn warden_in_use() -> bool {
    cfg!(target_os = "linux") && WARDEN.get().is_some()
}

/// Waits until every process group launched so far is gone, at most `limit`.
/// Returns how many are left.
pub async fn wait_all_gone(limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let notified = group_gone().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let live = LIVE_GROUPS.load(Ordering::Acquire);
        if live == 0 {
            return 0;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return LIVE_GROUPS.load(Ordering::Acquire);
        }
    }
}

/// One service's right to run a process: held by its current instance
/// until that instance's whole group is gone.
#[derive(Debug)]
pub struct ProcessSlot {
    permit: Arc<Semaphore>,
    /// Process group of the running instance (0: none).
    pgid: AtomicU32,
}

impl Default for ProcessSlot {
    fn default() -> Self {
        Self {
            permit: Arc::new(Semaphore::new(1)),
            pgid: AtomicU32::new(0),
        }
    }
}

impl ProcessSlot {
    /// The process group of the running instance, if any.
    pub fn pgid(&self) -> Option<u32> {
        match self.pgid.load(Ordering::Acquire) {
            0 => None,
            p => Some(p),
        }
    }

    /// Sends `signal` to the running instance's whole group.
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        match self.pgid() {
            Some(pgid) => signal_group(pgid, signal),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no process is running",
            )),
        }
    }

    /// Processes in the running instance's group.
    pub fn members(&self) -> usize {
        self.pgid().map_or(0, group_members)
    }
}

/// The signals mcpvisor sends to upstream process groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ask to end.
    Term,
    /// End now.
    Kill,
    /// Freeze (a hang drill).
    Stop,
    /// Thaw.
    Cont,
}

#[cfg(unix)]
impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Self::Term => libc::SIGTERM,
            Self::Kill => libc::SIGKILL,
            Self::Stop => libc::SIGSTOP,
            Self::Cont => libc::SIGCONT,
        }
    }
}

/// Sends `signal` to every process in group `pgid`.
#[cfg(unix)]
pub fn signal_group(pgid: u32, signal: Signal) -> std::io::Result<()> {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    if pgid <= 1 {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    if unsafe { libc::kill(-pgid, signal.raw()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
pub fn signal_group(_: u32, _: Signal) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Whether any live process is left in group `pgid`. Zombies do not
/// count: an orphan's zombie is its new parent's to reap, not ours.
#[cfg(unix)]
fn group_alive(pgid: u32) -> bool {
    if std::path::Path::new("/proc/self/stat").exists() {
        return group_members(pgid) > 0;
    }
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the group exists.
    let found = unsafe { libc::kill(-pgid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn group_alive(_: u32) -> bool {
    false
}

/// The processes of group `pgid`, read from `/proc` (0 where there is none).
pub fn group_members(pgid: u32) -> usize {
    proc_stats()
        .filter(|s| s.pgrp == pgid && s.state != 'Z')
        .count()
}

/// Live processes per process group, from one read of `/proc`.
pub fn group_sizes() -> std::collections::HashMap<u32, usize> {
    let mut sizes = std::collections::HashMap::new();
    for s in proc_stats().filter(|s| s.state != 'Z') {
        *sizes.entry(s.pgrp).or_insert(0) += 1;
    }
    sizes
}

/// Live processes descended from this one, from `/proc` (0 where there is none).
pub fn descendants() -> usize {
    let me = std::process::id();
    let stats: Vec<ProcStat> = proc_stats().filter(|s| s.state != 'Z').collect();
    let mut found = vec![me];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(stats.iter().filter(|s| s.ppid == parent).map(|s| s.pid));
        i += 1;
    }
    found.len() - 1
}

/// What this process uses, from `/proc/self` (`None` where it is missing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Resident memory.
    pub rss_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// User and system CPU time.
    pub cpu_seconds: f64,
}

/// This process's resident memory, threads and CPU time.
#[cfg(unix)]
pub fn usage() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // SAFETY: sysconf only reads a system constant.
    let (page, tick) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    parse_usage(&stat, u64::try_from(page).ok()?, u64::try_from(tick).ok()?)
}

#[cfg(not(unix))]
pub fn usage() -> Option<Usage> {
    None
}

/// Fields 14 and 15 (utime, stime), 20 (threads) and 24 (rss, in pages)
/// of a `stat` line.
fn parse_usage(stat: &str, page: u64, tick: u64) -> Option<Usage> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = field(14)? + field(15)?;
    Some(Usage {
        rss_bytes: field(24)? * page,
        threads: field(20)?,
        cpu_seconds: ticks as f64 / tick.max(1) as f64,
    })
}

/// Lets a closed pipe end this process quietly, as Unix tools do
/// (`mcpvisor check-config | head`), instead of failing the next write.
/// For short commands only: the daemon keeps ignoring SIGPIPE.
pub fn die_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal, before any
    // thread that could be writing exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Open file descriptors of this process (0 where `/proc` is missing).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1))
}

struct ProcStat {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    state: char,
}

fn proc_stats() -> impl Iterator<Item = ProcStat> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_stat(pid, &stat)
        })
}

/// `pid (comm) state ppid pgrp …`; `comm` may hold spaces and parentheses.
fn parse_stat(pid: u32, stat: &str) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        ppid,
        pgrp,
        state,
    })
}

/// What to launch.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The program (resolved against `PATH` before launching).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
    /// How long the group has between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// A running server process group; ended (as a group) when dropped.
pub struct UpstreamProcess {
    child: Option<Child>,
    pgid: u32,
    grace: Duration,
    slot: Arc<ProcessSlot>,
    permit: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for UpstreamProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamProcess")
            .field("pgid", &self.pgid)
            .finish()
    }
}

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The program is not there, or not executable.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// The previous instance's processes did not go away.
    #[error("the previous instance's processes are still running after {0} ms")]
    PreviousAlive(u128),
}

impl UpstreamProcess {
    /// Launches `launch` once `slot`'s previous instance is gone; `stdio`
    /// sets up the pipes on the command.
    pub async fn spawn(
        launch: &Launch,
        slot: &Arc<ProcessSlot>,
        stdio: impl FnOnce(&mut Command),
    ) -> Result<Self, LaunchError> {
        // The previous instance gets its grace period and the SIGKILL after it.
        let patience = launch.grace + Duration::from_secs(2);
        let permit = tokio::time::timeout(patience, slot.permit.clone().acquire_owned())
            .await
            .map_err(|_| LaunchError::PreviousAlive(patience.as_millis()))?
            .map_err(|_| LaunchError::PreviousAlive(0))?;
        let shown = launch.program.display().to_string();
        let program =
            resolve(&launch.program, &launch.env, launch.cwd.as_deref()).map_err(|source| {
                LaunchError::Spawn {
                    program: shown.clone(),
                    source,
                }
            })?;
        let mut cmd = match WARDEN.get().filter(|_| warden_in_use()) {
            Some(warden) => {
                let mut cmd = Command::new(warden);
                cmd.arg(warden::ARG)
                    .arg(launch.grace.as_millis().to_string())
                    .arg(std::process::id().to_string())
                    .arg("--")
                    .arg(&program);
                cmd
            }
            None => Command::new(&program),
        };
        cmd.args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(false);
        if let Some(dir) = &launch.cwd {
            cmd.current_dir(dir);
        }
        stdio(&mut cmd);
        #[cfg(unix)]
        {
            cmd.process_group(0);
            let death = if warden_in_use() {
                libc::SIGTERM
            } else {
                libc::SIGKILL
            };
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    #[cfg(target_os = "linux")]
                    if libc::prctl(libc::PR_SET_PDEATHSIG, death as libc::c_ulong) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let _ = death;
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            program: shown,
            source,
        })?;
        let pgid = child.id().unwrap_or(0);
        LIVE_GROUPS.fetch_add(1, Ordering::AcqRel);
        slot.pgid.store(pgid, Ordering::Release);
        Ok(Self {
            child: Some(child),
            pgid,
            grace: launch.grace,
            slot: slot.clone(),
            permit: Some(permit),
        })
    }

    /// The group leader's pid (the warden's, or the server's).
    pub fn pid(&self) -> u32 {
        self.pgid
    }

    /// The leader process (for its pipes).
    pub fn child_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is only taken when dropped")
    }

    /// Waits for the group leader to exit. With a warden, that means the
    /// whole group is gone: it leaves last.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child_mut().wait().await;
        self.leader_gone();
        status
    }

    /// The leader's exit status, if it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        let status = self.child_mut().try_wait();
        if matches!(status, Ok(Some(_))) {
            self.leader_gone();
        }
        status
    }

    /// Once the leader is reaped its pid may be reused: nobody may signal
    /// the group by that number any more.
    fn leader_gone(&mut self) {
        let _ = self
            .slot
            .pgid
            .compare_exchange(self.pgid, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}

impl Drop for UpstreamProcess {
    fn drop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        let reaper = Reaper {
            child,
            pgid: self.pgid,
            grace: self.grace,
            slot: self.slot.clone(),
            permit: self.permit.take(),
            done: false,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(reaper.run());
            }
            // No runtime (the process is ending): ask the group to go; the
            // warden, told of our death, finishes the job.
            Err(_) => reaper.ask(),
        }
    }
}

/// Ends one process group in the background.
struct Reaper {
    child: Child,
    pgid: u32,
    grace: Duration,
    slot: Arc<ProcessSlot>,
    permit: Option<OwnedSemaphorePermit>,
    /// It ran to its end.
    done: bool,
}

impl Drop for Reaper {
    /// A reaper dropped before it ran (the runtime is going away) still
    /// asks the group to go; a warden finishes the job.
    fn drop(&mut self) {
        if !self.done {
            self.ask();
        }
    }
}

impl Reaper {
    fn ask(&self) {
        // Members alive keep the group's number theirs, even after the
        // leader was reaped.
        if self.pgid > 1 && group_alive(self.pgid) {
            let _ = signal_group(self.pgid, Signal::Term);
            // A frozen group cannot act on SIGTERM.
            let _ = signal_group(self.pgid, Signal::Cont);
        }
    }

    async fn run(mut self) {
        self.ask();
        let deadline = tokio::time::Instant::now() + self.grace;
        // A warden escalates to SIGKILL at the end of the grace period itself.
        let _ =
            tokio::time::timeout_at(deadline + Duration::from_millis(500), self.child.wait()).await;
        let _ = self
            .slot
            .pgid
            .compare_exchange(self.pgid, 0, Ordering::AcqRel, Ordering::Acquire);
        // The leader gone, its group may live on (no warden, or a warden
        // killed outright). A group number is not given to a new process
        // while any member lives, so signalling a group seen alive is safe.
        let mut pause = Duration::from_millis(5);
        while self.pgid > 1 && group_alive(self.pgid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        if self.pgid > 1 && group_alive(self.pgid) {
            tracing::warn!(
                pgid = self.pgid,
                grace_ms = self.grace.as_millis() as u64,
                "upstream processes ignored SIGTERM; killing the group"
            );
            let _ = signal_group(self.pgid, Signal::Kill);
            let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        }
        drop(self.permit.take());
        LIVE_GROUPS.fetch_sub(1, Ordering::AcqRel);
        group_gone().notify_waiters();
        self.done = true;
    }
}

/// Finds `program` the way the launched process would: as given when it
/// names a path, else along the `PATH` it will run with. A missing program
/// is reported here, by name, rather than as a failed start of the warden.
fn resolve(
    program: &Path,
    env: &[(OsString, OsString)],
    cwd: Option<&Path>,
) -> std::io::Result<PathBuf> {
    // ENOENT, so the message reads as a failed exec would.
    let not_found = || std::io::Error::from_raw_os_error(2);
    if program.components().count() > 1 || program.is_absolute() {
        let full = match cwd {
            Some(dir) if program.is_relative() => dir.join(program),
            _ => program.to_path_buf(),
        };
        return if full.is_file() {
            Ok(program.to_path_buf())
        } else {
            Err(not_found())
        };
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var_os("PATH"))
        .ok_or_else(not_found)?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
        .ok_or_else(not_found)
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_reads_threads_cpu_and_resident_pages_from_a_stat_line() {
        // pid (comm with ") spaces") state ppid pgrp session tty tpgid flags
        // minflt cminflt majflt cmajflt utime stime cutime cstime priority
        // nice num_threads itrealvalue starttime vsize rss
        let stat =
            "42 (a ) b) S 1 42 42 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 7 0 100 123456 300 rest";
        let u = parse_usage(stat, 4096, 100).expect("parsed");
        assert_eq!(u.threads, 7);
        assert_eq!(u.rss_bytes, 300 * 4096);
        assert!((u.cpu_seconds - 3.0).abs() < 1e-9);
    }

    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let s = parse_stat(42, "42 (a (weird) name) S 7 42 42 0 -1").unwrap();
        assert_eq!((s.pid, s.ppid, s.pgrp, s.state), (42, 7, 42, 'S'));
        assert!(parse_stat(1, "garbage").is_none());
    }

    #[test]
    fn programs_resolve_along_path_or_not_at_all() {
        assert!(resolve(Path::new("sh"), &[], None).is_ok());
        assert!(resolve(Path::new("/bin/sh"), &[], None).is_ok());
        let e = resolve(Path::new("no-such-program-here"), &[], None).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let e = resolve(Path::new("/nonexistent/x"), &[], None).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn dropping_a_process_ends_its_whole_group() {
        let slot = Arc::new(ProcessSlot::default());
        let launch = Launch {
            program: "sh".into(),
            // A wrapper whose real work is a background child.
            args: vec!["-c".into(), "sleep 300 & wait".into()],
            env: Vec::new(),
            cwd: None,
            grace: Duration::from_millis(500),
        };
        let p = UpstreamProcess::spawn(&launch, &slot, |_| {})
            .await
            .unwrap();
        let pgid = p.pid();
        // Both the shell and its sleep are in the group.
        let mut members = 0;
        for _ in 0..200 {
            members = group_members(pgid);
            if members == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(members, 2);
        drop(p);
        // The next launch waits for the slot, so the group is gone once it has it.
        let next = UpstreamProcess::spawn(&launch, &slot, |_| {})
            .await
            .unwrap();
        assert!(!group_alive(pgid), "group {pgid} still alive");
        drop(next);
        assert_eq!(wait_all_gone(Duration::from_secs(5)).await, 0);
    }
}
