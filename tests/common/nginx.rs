//! nginx, Debian's package (`.ci/run` installs it), serving a site `face-service deploy nginx`
//! printed, as a child process in a scratch directory of its own.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::child::{KillOnDrop, passes};
use super::scratch;

/// nginx with a printed site.
pub struct Nginx {
    process: KillOnDrop,
    dir: PathBuf,
}

impl Drop for Nginx {
    /// SIGTERM, which nginx's master passes to its workers: killed outright, it would leave
    /// them running.
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.process.0);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.process.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Nginx {
    /// Checks the site with `nginx -t`, then serves it.
    pub fn start(site: &str, port: u16) -> Nginx {
        let dir = scratch("nginx");
        std::fs::write(dir.join("site.conf"), site).unwrap();
        // As root, nginx's workers would drop to `nobody`, who cannot read this directory.
        let user = if rustix::process::getuid().is_root() {
            "user root;"
        } else {
            ""
        };
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "{user}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                 include {d}/site.conf;\n}}\n"
            ),
        )
        .unwrap();
        let nginx = |extra: &[&str]| {
            let mut command = Command::new("nginx");
            command
                .args(extra)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"));
            command
        };
        passes(&mut nginx(&["-t"]));
        let process = KillOnDrop(
            nginx(&[])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("nginx, installed by .ci/run"),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { process, dir }
    }
}
