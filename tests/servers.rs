//! Servers the tests start and stop themselves: a private `redis-server` (to kill mid-run), a
//! six-node Redis Cluster (three masters, a replica each), and a private PostgreSQL cluster (`initdb` + `pg_ctl`), each on free
//! loopback ports and stopped by their own handles; plus the shared servers' URLs, checked.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::free_port;

/// `REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("auth-layer-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..100 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not become ready");
}

/// True while `child` runs; a panic naming `port` once it has exited (a server that could not bind).
fn running(child: &mut std::process::Child, port: u16) -> bool {
    match child.try_wait() {
        Ok(None) => true,
        status => panic!("redis-server on port {port} exited at start: {status:?}"),
    }
}

fn redis_ping(port: u16) -> bool {
    Command::new("redis-cli").args(["-p", &port.to_string(), "ping"]).output().is_ok_and(|o| {
        let answer = String::from_utf8_lossy(&o.stdout);
        answer.trim() == "PONG" || answer.contains("NOAUTH")
    })
}

/// A private `redis-server` that persists every write (append-only file, fsync always), so a
/// restart loses nothing that was committed.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free port.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Starts one on a free port with extra `redis-server` arguments (e.g. `--requirepass`).
    pub fn start_with_args(args: &[&str]) -> Self {
        let mut server = Self {
            port: free_port(),
            dir: temp_dir("redis"),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.restart();
        server
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: no goodbye to clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP): its connections stay open and nothing is answered, as with a
    /// server that hangs or a network that drops packets without a reset.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [`pause`](Self::pause)d server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server is running").id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success(), "kill {signal} {pid}");
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir.to_str().unwrap()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let port = self.port;
        // Kept by `self` at once, so that a panic below still stops it (on drop).
        let child = self.child.insert(child);
        // A server that could not bind exits; another one answering on its port is not this one.
        wait_for("redis-server", || running(child, port) && redis_ping(port));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A local Redis Cluster of three masters with a replica each, on free loopback ports, with a
/// node timeout of 2 s so that a failover takes seconds; stopped when dropped.
pub struct RedisCluster {
    /// The nodes' URLs (masters first, as created; roles change with a failover).
    pub urls: Vec<String>,
    ports: Vec<u16>,
    nodes: Vec<Option<std::process::Child>>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts six nodes and joins them into a cluster: three masters, a replica each.
    pub fn start() -> Self {
        let dir = temp_dir("redis-cluster");
        let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for port in &ports {
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "2000"])
                // The bus port of its own: the default, 10,000 above, may not exist.
                .args(["--cluster-port", &free_port().to_string()])
                .args(["--dir", node_dir.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed");
            nodes.push(Some(child));
        }
        // Owned by the cluster at once, so that a panic below still stops the nodes (on drop).
        let urls = ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect();
        let mut cluster = Self { urls, ports: ports.clone(), nodes, dir };
        for (node, port) in cluster.nodes.iter_mut().zip(&ports) {
            let port = *port;
            wait_for("a cluster node", || running(node.as_mut().unwrap(), port) && redis_ping(port));
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed");
        assert!(created.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&created.stdout));
        cluster.wait_until_ok();
        wait_for("a replica for every master", || cluster.replicas().len() == 3);
        cluster
    }

    /// Waits until every node still running says the cluster is ok.
    pub fn wait_until_ok(&self) {
        for port in self.running_ports() {
            wait_for("the cluster", || cluster_info(port).contains("cluster_state:ok"));
        }
    }

    fn running_ports(&self) -> Vec<u16> {
        self.ports.iter().zip(&self.nodes).filter(|(_, node)| node.is_some()).map(|(port, _)| *port).collect()
    }

    /// `CLUSTER NODES` as a running node sees it: (port, is master, is failed) per node.
    fn roles(&self) -> Vec<(u16, bool, bool)> {
        let port = self.running_ports()[0];
        let out = Command::new("redis-cli").args(["-p", &port.to_string(), "cluster", "nodes"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
                let flags = fields.get(2)?;
                Some((port, flags.contains("master"), flags.contains("fail")))
            })
            .collect()
    }

    /// The ports of the masters serving now (not failed).
    pub fn masters(&self) -> Vec<u16> {
        self.roles().into_iter().filter(|(_, master, failed)| *master && !failed).map(|(port, ..)| port).collect()
    }

    /// The ports of the replicas serving now.
    pub fn replicas(&self) -> Vec<u16> {
        self.roles().into_iter().filter(|(_, master, failed)| !master && !failed).map(|(port, ..)| port).collect()
    }

    /// The replica of the master at `master`.
    pub fn replica_of(&self, master: u16) -> u16 {
        let out = Command::new("redis-cli").args(["-p", &master.to_string(), "cluster", "myid"]).output().unwrap();
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let port = self.running_ports()[0];
        let out = Command::new("redis-cli").args(["-p", &port.to_string(), "cluster", "nodes"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|line| line.split_whitespace().nth(3) == Some(id.as_str()))
            .and_then(|line| line.split_whitespace().nth(1)?.split(['@', ':']).nth(1)?.parse().ok())
            .expect("the master has a replica")
    }

    /// Waits until the replica of the master at `master` has every write the master took
    /// (`WAIT 1`).
    pub fn wait_for_replica(&self, master: u16) {
        let out = Command::new("redis-cli").args(["-p", &master.to_string(), "wait", "1", "5000"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "the replica of {master} did not catch up");
    }

    /// How many keys matching `pattern` the node at `port` holds.
    pub fn count_keys(&self, port: u16, pattern: &str) -> usize {
        let out =
            Command::new("redis-cli").args(["-p", &port.to_string(), "--scan", "--pattern", pattern]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    /// `CLUSTER FAILOVER` on the replica at `replica`: it becomes master, its master a replica.
    pub fn failover(&self, replica: u16) {
        let out = Command::new("redis-cli").args(["-p", &replica.to_string(), "cluster", "failover"]).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"), "{}", String::from_utf8_lossy(&out.stdout));
        wait_for("the replica to take over", || self.masters().contains(&replica));
    }

    /// Kills the node at `port` outright (`SIGKILL`), as a crashed machine.
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("a node of this cluster");
        if let Some(mut node) = self.nodes[i].take() {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

fn cluster_info(port: u16) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private PostgreSQL cluster, run as the `postgres` user, that a test may stop and restart.
pub struct PgServer {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// Extra server settings (`-c name=value ...`).
    settings: String,
}

fn as_postgres(program: &std::path::Path) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--"]).arg(program);
    command
}

impl PgServer {
    /// Initialises and starts one on a free port.
    pub fn start() -> Self {
        Self::start_with_settings("")
    }

    /// [`start`](Self::start) with extra server settings, e.g. `-c ssl=on -c ssl_cert_file=...`.
    pub fn start_with_settings(settings: &str) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries must be installed (/usr/lib/postgresql/*/bin)")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("pg_ctl").exists())
            .expect("pg_ctl not found under /usr/lib/postgresql");
        let dir = temp_dir("pg");
        let status = Command::new("chown").args(["-R", "postgres:postgres", dir.to_str().unwrap()]).status().unwrap();
        assert!(status.success());
        let data = dir.join("data");
        let init = as_postgres(&bin.join("initdb"))
            .args(["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(init.success(), "initdb failed");
        let server = Self { port: free_port(), dir, bin, settings: settings.to_owned() };
        server.restart();
        server
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it at once (`-m immediate`: no goodbye to clients).
    pub fn stop(&self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D", self.dir.join("data").to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts it (again) on the same port and data.
    pub fn restart(&self) {
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 {}", self.port, self.dir.display(), self.settings);
        let started = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D", self.dir.join("data").to_str().unwrap(), "-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(started.success(), "pg_ctl start failed; see {}", self.dir.join("log").display());
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private certificate authority and a server certificate for 127.0.0.1 signed by it, made
/// with `openssl` in `dir`: `(ca.pem, cert.pem, key.pem)`.
pub fn private_ca(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = "set -e
        openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=auth-layer-test-ca -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out server.csr
        printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext -out cert.pem";
    let made = Command::new("sh").args(["-c", script]).current_dir(dir).output().expect("openssl must be installed");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))
}

/// A fresh temporary directory named after `name`.
pub fn scratch_dir(name: &str) -> PathBuf {
    temp_dir(name)
}
