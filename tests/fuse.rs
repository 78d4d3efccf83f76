//! Black-box tests of `envsnap mount`: a real FUSE mount, read by the tools people use
//! (`diff -r`, `cp -a`, `tar`, `find`, `sqlite3`), several readers at once, writes
//! refused, damage confined to one file, new snapshots appearing, and a clean unmount
//! on SIGTERM. They need /dev/fuse and `fusermount3` (tests/run.sh installs fuse3), and
//! fail, rather than pass, without them.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, TestResult, assert_same_tree, describe, git, noise};

const CONFIG: &str = r#"
production = "main"

[[mount]]
name = "uploads"
path = "var/uploads"

[[service]]
name = "db"
type = "sqlite"
path = "var/app.sqlite"

[[service]]
name = "notes"
type = "command"
dump = "cat var/notes.txt"
restore = "cat > var/notes.txt"
extension = "txt"
"#;

/// Fails, saying what to install, when this machine cannot mount FUSE file systems.
fn require_fuse() -> TestResult {
    if !Path::new("/dev/fuse").exists() {
        return Err("FUSE is not available: /dev/fuse is missing. These tests mount for real: run them where \
                    /dev/fuse exists (in a container: --device /dev/fuse --cap-add SYS_ADMIN)"
            .into());
    }
    if Command::new("fusermount3").arg("-V").output().is_err() {
        return Err("fusermount3 is missing: install the fuse3 package (tests/run.sh does)".into());
    }
    Ok(())
}

/// Everything a mount shows from `populate`, and more: big, sparse, linked, odd names.
fn populate(project: &Project) -> TestResult {
    let dir = project.root().join("var/uploads");
    fs::create_dir_all(dir.join("photos/2024/empty"))?;
    fs::write(dir.join("readme.txt"), "hello\n")?;
    fs::write(dir.join("empty.bin"), b"")?;
    // Several chunks, so that reads cross chunk boundaries and prefetch has work.
    fs::write(dir.join("photos/2024/big.jpg"), noise(1, 5 << 20))?;
    fs::write(dir.join("photos/repeated.txt"), "the same line again\n".repeat(50_000))?;
    let sparse = fs::File::create(dir.join("sparse.img"))?;
    sparse.set_len(8 << 20)?;
    sparse.write_all_at(b"data!", 4 << 20)?;
    drop(sparse);
    fs::write(dir.join(OsStr::from_bytes(b"caf\xe9-latin1.txt")), "latin-1 name")?;
    std::os::unix::fs::symlink("readme.txt", dir.join("link-to-readme"))?;
    std::os::unix::fs::symlink("/etc/hostname", dir.join("absolute-link"))?;
    std::os::unix::fs::symlink("does/not/exist", dir.join("dangling"))?;
    fs::write(dir.join("photos/original.txt"), "linked content")?;
    fs::hard_link(dir.join("photos/original.txt"), dir.join("hardlink.txt"))?;
    for index in 0..200 {
        fs::write(dir.join(format!("photos/small-{index:03}.txt")), format!("small file {index}\n").repeat(index))?;
    }
    fs::set_permissions(dir.join("readme.txt"), fs::Permissions::from_mode(0o640))?;
    fs::set_permissions(dir.join("photos/2024"), fs::Permissions::from_mode(0o750))?;
    fs::set_permissions(dir.join("empty.bin"), fs::Permissions::from_mode(0o4755))?;
    let when = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_file_mtime(dir.join("readme.txt"), when)?;
    filetime::set_file_mtime(dir.join("photos/2024/empty"), when)?;
    let status = Command::new("sqlite3")
        .arg(project.root().join("var/app.sqlite"))
        .arg(
            "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); \
              INSERT INTO users(name) VALUES ('ada'), ('grace'), ('linus');",
        )
        .status()?;
    assert!(status.success(), "sqlite3 creates the database");
    fs::write(project.root().join("var/notes.txt"), "remember the milk\n")?;
    Ok(())
}

/// A running `envsnap mount`; unmounts and stops it when dropped, whatever happened.
struct Mount {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Mount {
    /// Mounts the project's snapshots (`extra`: e.g. an id) at a new directory and waits
    /// until `ready` (a path inside the mount) appears.
    fn start(project: &Project, extra: &[&str], ready: &str) -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_with(project, extra, ready, &[])
    }

    /// Like [`Mount::start`], with the environment variables `vars` set.
    fn start_with(
        project: &Project,
        extra: &[&str],
        ready: &str,
        vars: &[(&str, &str)],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        require_fuse()?;
        let dir = tempfile::Builder::new().prefix("envsnap-mount-").tempdir()?.keep();
        let log = dir.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_envsnap"))
            .arg("mount")
            .arg(&dir)
            .args(extra)
            .current_dir(project.root())
            .env("ENVSNAP_REPOSITORY", &project.repository)
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()?;
        let mut mount = Mount { child, dir, log };
        let started = Instant::now();
        while !mount.dir.join(ready).exists() {
            if let Some(status) = mount.child.try_wait()? {
                return Err(format!("envsnap mount ended ({status}) before mounting:\n{}", mount.stderr()).into());
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(format!("{ready} did not appear in the mount within 20 s:\n{}", mount.stderr()).into());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(mount)
    }

    fn path(&self, inside: &str) -> PathBuf {
        self.dir.join(inside)
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal to the mount process.
    fn signal(&self, name: &str) -> TestResult {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status()?;
        assert!(status.success(), "kill -{name}");
        Ok(())
    }

    /// Waits for the process to end by itself.
    fn wait(&mut self, limit: Duration) -> Result<std::process::ExitStatus, Box<dyn std::error::Error>> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > limit {
                return Err(format!("envsnap mount still runs after {limit:?}:\n{}", self.stderr()).into());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").args(["-u", "-z", "-q"]).arg(&self.dir).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir(&self.dir);
        let _ = fs::remove_file(&self.log);
    }
}

/// True when something is mounted exactly at `dir`.
fn is_mounted(dir: &Path) -> Result<bool, std::io::Error> {
    let dir = dir.canonicalize()?;
    let table = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(table.lines().any(|line| line.split(' ').nth(4) == Some(dir.to_str().unwrap_or_default())))
}

fn run(program: &str, args: &[&OsStr]) -> Result<String, Box<dyn std::error::Error>> {
    let output = Command::new(program).args(args).output()?;
    if !output.status.success() {
        return Err(format!(
            "{program} {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn the_tools_people_use_read_a_snapshot_as_it_was() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&project)?;
    project.ok(&["init"])?;
    let id = project.backup(&[])?;
    let source = project.root().join("var/uploads");
    let mount = Mount::start(&project, &[], "envs")?;
    let files = mount.path("envs/main/latest/files/uploads");

    run("diff", &["-r".as_ref(), "--no-dereference".as_ref(), source.as_os_str(), files.as_os_str()])?;
    // Modes, times, symlinks and hard links as captured, not only contents.
    assert_same_tree(&source, &files)?;
    let linked = fs::metadata(files.join("hardlink.txt"))?;
    assert_eq!(linked.nlink(), 2);
    assert_eq!(linked.ino(), fs::metadata(files.join("photos/original.txt"))?.ino(), "hard links share an inode");

    let found = run("find", &[files.as_os_str(), "-type".as_ref(), "f".as_ref()])?;
    let expected = run("find", &[source.as_os_str(), "-type".as_ref(), "f".as_ref()])?;
    assert_eq!(found.lines().count(), expected.lines().count(), "find sees every file");

    let copied = project.root().join("copied");
    run("cp", &["-a".as_ref(), files.as_os_str(), copied.as_os_str()])?;
    assert_same_tree(&source, &copied)?;

    let unpacked = project.root().join("unpacked");
    fs::create_dir(&unpacked)?;
    let archive = project.root().join("uploads.tar");
    // The POSIX format keeps nanoseconds, which GNU tar's own format would round away.
    let create = ["--format=posix".as_ref(), "-cf".as_ref(), archive.as_os_str()];
    run("tar", &[&create[..], &["-C".as_ref(), files.as_os_str(), ".".as_ref()]].concat())?;
    run("tar", &["-xf".as_ref(), archive.as_os_str(), "-C".as_ref(), unpacked.as_os_str()])?;
    assert_same_tree(&source, &unpacked)?;

    // Reads at odd offsets, across chunk boundaries, give the stored bytes.
    let big = fs::read(source.join("photos/2024/big.jpg"))?;
    let file = fs::File::open(files.join("photos/2024/big.jpg"))?;
    for step in 0..64u64 {
        let offset = (step * 81_919 + step * step * 7) % (big.len() as u64 - 70_000);
        let mut buffer = vec![0; 70_000];
        file.read_exact_at(&mut buffer, offset)?;
        assert!(buffer == big[offset as usize..offset as usize + 70_000], "bytes at {offset} differ");
    }

    // Services: one stream is one file named after its extension.
    let services = mount.path("envs/main/latest/services");
    assert_eq!(fs::read_to_string(services.join("notes.txt"))?, "remember the milk\n");
    let database = services.join("db.sqlite");
    let names = run("sqlite3", &[database.as_os_str(), "SELECT name FROM users ORDER BY id".as_ref()])?;
    assert_eq!(names, "ada\ngrace\nlinus\n");

    // The same folder by id, by id prefix and by commit; its snapshot.json.
    let head = git(project.root(), &["rev-parse", "HEAD"])?;
    for folder in [format!("ids/{id}"), format!("ids/{}", &id[..8]), format!("commits/{}/{id}", head.trim())] {
        assert_eq!(fs::read(mount.path(&folder).join("files/uploads/readme.txt"))?, b"hello\n", "{folder}");
    }
    let json: serde_json::Value = serde_json::from_slice(&fs::read(mount.path("envs/main/latest/snapshot.json"))?)?;
    assert_eq!(json["id"], id.as_str());
    assert_eq!(json["elements"][0]["name"], "uploads");
    let latest = fs::read_link(mount.path("envs/main/latest"))?;
    assert!(latest.to_string_lossy().ends_with(&id[..12]), "latest -> {latest:?}");
    Ok(())
}

#[test]
fn several_readers_at_once_and_every_write_refused() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&project)?;
    project.ok(&["init"])?;
    project.backup(&[])?;
    let source = project.root().join("var/uploads");
    let mount = Mount::start(&project, &[], "envs")?;
    let files = mount.path("envs/main/latest/files/uploads");

    let (expected, _) = describe(&source)?;
    std::thread::scope(|scope| -> TestResult {
        let readers: Vec<_> = (0..6)
            .map(|reader| {
                let expected = &expected;
                let files = &files;
                scope.spawn(move || -> Result<usize, String> {
                    let mut checked = 0;
                    // Each reader goes through the files in another order.
                    let mut paths: Vec<_> = expected.iter().collect();
                    let turn = reader * paths.len() / 6;
                    paths.rotate_left(turn);
                    for (path, entry) in paths {
                        if let common::Entry::File { content, .. } = entry {
                            let mut bytes = Vec::new();
                            fs::File::open(files.join(path))
                                .and_then(|mut file| file.read_to_end(&mut bytes))
                                .map_err(|error| format!("{}: {error}", path.display()))?;
                            if blake3::hash(&bytes) != *content {
                                return Err(format!("reader {reader}: {} differs", path.display()));
                            }
                            checked += 1;
                        }
                    }
                    Ok(checked)
                })
            })
            .collect();
        for reader in readers {
            let checked = reader.join().map_err(|_| "a reader panicked")??;
            assert!(checked > 200, "each reader read every file: {checked}");
        }
        Ok(())
    })?;

    let read_only = |result: std::io::Result<()>, what: &str| -> TestResult {
        match result {
            Err(error) if error.raw_os_error() == Some(libc::EROFS) => Ok(()),
            other => Err(format!("{what}: expected EROFS, got {other:?}").into()),
        }
    };
    read_only(fs::write(files.join("new.txt"), "x"), "creating a file")?;
    read_only(fs::OpenOptions::new().append(true).open(files.join("readme.txt")).map(drop), "appending")?;
    read_only(fs::OpenOptions::new().write(true).open(files.join("readme.txt")).map(drop), "opening for write")?;
    read_only(fs::create_dir(files.join("new-dir")), "mkdir")?;
    read_only(fs::remove_file(files.join("readme.txt")), "rm")?;
    read_only(fs::rename(files.join("readme.txt"), files.join("moved.txt")), "mv")?;
    read_only(fs::set_permissions(files.join("readme.txt"), fs::Permissions::from_mode(0o777)), "chmod")?;
    read_only(std::os::unix::fs::symlink("x", files.join("new-link")), "ln -s")?;
    read_only(fs::create_dir(mount.path("envs/new-branch")), "mkdir in envs/")?;
    assert_eq!(fs::read(files.join("readme.txt"))?, b"hello\n", "nothing changed");
    Ok(())
}

#[test]
fn a_damaged_chunk_fails_its_file_only() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&project)?;
    let source = project.root().join("var/uploads");
    let victim = noise(7, 300 << 10);
    fs::write(source.join("victim.bin"), &victim)?;
    project.ok(&["init"])?;
    project.backup(&[])?;

    // Noise is stored as is: find its bytes in a pack and flip one.
    let needle = &victim[100_000..100_064];
    let mut damaged = false;
    for pack in walk(&project.repository.join("packs"))? {
        let mut bytes = fs::read(&pack)?;
        if let Some(at) = bytes.windows(needle.len()).position(|window| window == needle) {
            bytes[at + 10] ^= 0x40;
            fs::set_permissions(&pack, fs::Permissions::from_mode(0o644))?;
            fs::write(&pack, &bytes)?;
            damaged = true;
        }
    }
    assert!(damaged, "the victim's bytes were found in a pack");

    let mount = Mount::start(&project, &[], "envs")?;
    let files = mount.path("envs/main/latest/files/uploads");
    let error = fs::read(files.join("victim.bin")).err().ok_or("reading the damaged file fails")?;
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    let (expected, _) = describe(&source)?;
    for (path, entry) in &expected {
        if let common::Entry::File { content, .. } = entry
            && path != Path::new("victim.bin")
        {
            assert_eq!(blake3::hash(&fs::read(files.join(path))?), *content, "{} reads fine", path.display());
        }
    }
    let diff = Command::new("diff").args(["-r", "--no-dereference"]).arg(&source).arg(&files).output()?;
    let said = String::from_utf8_lossy(&diff.stderr);
    assert_eq!(said.lines().count(), 1, "diff -r fails on the damaged file only: {said}");
    assert!(said.contains("victim.bin"), "{said}");
    drop(mount);
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() { found.extend(walk(&path)?) } else { found.push(path) }
    }
    Ok(found)
}

#[test]
fn snapshots_taken_while_mounted_appear() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&project)?;
    project.ok(&["init"])?;
    let first = project.backup(&[])?;
    let mount = Mount::start(&project, &[], "envs")?;
    let readme = mount.path("envs/main/latest/files/uploads/readme.txt");
    assert_eq!(fs::read(&readme)?, b"hello\n");

    fs::write(project.root().join("var/uploads/readme.txt"), "changed\n")?;
    let second = project.backup(&[])?;
    let started = Instant::now();
    while fs::read_link(mount.path("envs/main/latest"))?.to_string_lossy().ends_with(&first[..12]) {
        assert!(started.elapsed() < Duration::from_secs(10), "the new snapshot did not appear in 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(fs::read(&readme)?, b"changed\n", "latest is the new snapshot");
    assert_eq!(fs::read_dir(mount.path("envs/main"))?.count(), 3, "two snapshots and latest");
    assert!(mount.path(&format!("ids/{second}")).is_dir());
    let first_folder = mount.path(&format!("ids/{first}/files/uploads/readme.txt"));
    assert_eq!(fs::read(first_folder)?, b"hello\n", "the old snapshot is still there");
    Ok(())
}

#[test]
fn one_snapshot_at_the_root() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&project)?;
    project.ok(&["init"])?;
    let id = project.backup(&[])?;
    let mount = Mount::start(&project, &[&id[..8]], "snapshot.json")?;
    assert_eq!(fs::read(mount.path("files/uploads/readme.txt"))?, b"hello\n");
    assert!(mount.path("services/db.sqlite").is_file());
    Ok(())
}

#[test]
fn an_encrypted_repository_mounts_with_the_password_from_a_command_and_says_how_to_give_one() -> TestResult {
    let password = "mount password";
    let project = Project::with_password(CONFIG, password)?;
    populate(&project)?;
    project.ok(&["init", "--encrypt"])?;
    project.backup(&[])?;
    // As from a keyring: the mount runs with no terminal and no password of its own.
    let command = format!("printf '%s\\n' '{password}'");
    let mount = Mount::start_with(&project, &[], "envs/main/latest", &[("ENVSNAP_PASSWORD_COMMAND", &command)])?;
    assert_eq!(fs::read(mount.path("envs/main/latest/files/uploads/readme.txt"))?, b"hello\n");
    drop(mount);

    let dir = tempfile::tempdir()?;
    let output = Command::new(env!("CARGO_BIN_EXE_envsnap"))
        .arg("mount")
        .arg(dir.path())
        .current_dir(project.root())
        .env("ENVSNAP_REPOSITORY", &project.repository)
        .env_remove("ENVSNAP_PASSWORD")
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("ENVSNAP_PASSWORD_COMMAND") && stderr.contains("--password-file"), "{stderr}");
    Ok(())
}

#[test]
fn sigterm_unmounts_even_when_busy() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&project)?;
    project.ok(&["init"])?;
    project.backup(&[])?;

    let mut mount = Mount::start(&project, &[], "envs")?;
    assert!(is_mounted(&mount.dir)?);
    mount.signal("TERM")?;
    let status = mount.wait(Duration::from_secs(10))?;
    assert!(status.success(), "SIGTERM ends the mount cleanly: {status}\n{}", mount.stderr());
    assert!(!is_mounted(&mount.dir)?, "nothing is left mounted");
    assert_eq!(fs::read_dir(&mount.dir)?.count(), 0, "the mount point is an empty directory again");

    // A file held open does not keep a dead mount behind: the mount is detached at once.
    let mut mount = Mount::start(&project, &[], "envs")?;
    let held = fs::File::open(mount.path("envs/main/latest/files/uploads/readme.txt"))?;
    mount.signal("INT")?;
    let started = Instant::now();
    while is_mounted(&mount.dir)? {
        assert!(started.elapsed() < Duration::from_secs(5), "the busy mount was not detached");
        std::thread::sleep(Duration::from_millis(25));
    }
    let status = mount.wait(Duration::from_secs(15))?;
    assert!(status.success(), "{status}\n{}", mount.stderr());
    drop(held);
    Ok(())
}

#[test]
fn clear_errors_for_a_bad_mount_point_or_id() -> TestResult {
    require_fuse()?;
    let project = Project::new(CONFIG)?;
    populate(&project)?;
    project.ok(&["init"])?;
    project.backup(&[])?;
    let missing = project.root().join("no/such/dir");
    let said = project.fails(&["mount", missing.to_str().ok_or("utf-8")?], 1)?;
    assert!(said.contains("does not exist") && said.contains("mkdir"), "{said}");
    let said = project.fails(&["mount", project.root().to_str().ok_or("utf-8")?, "abcdef0123"], 1)?;
    assert!(said.contains("no snapshot matches `abcdef0123`"), "{said}");
    let file = project.root().join("envsnap.toml");
    let said = project.fails(&["mount", file.to_str().ok_or("utf-8")?], 1)?;
    assert!(said.contains("not a directory"), "{said}");

    // A mount point in use by another mount is refused.
    let mount = Mount::start(&project, &[], "envs")?;
    let said = project.fails(&["mount", mount.dir.to_str().ok_or("utf-8")?], 1)?;
    assert!(said.contains("busy"), "{said}");
    Ok(())
}

#[test]
fn a_machine_without_fuse_is_told_what_to_install() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&project)?;
    project.ok(&["init"])?;
    project.backup(&[])?;
    let mount_point = project.root().join("mnt");
    fs::create_dir(&mount_point)?;
    // In a mount namespace of its own, /dev is an empty tmpfs: no /dev/fuse, as in a
    // container started without the device. (This needs root, as the other tests here.)
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs none /dev && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_envsnap"))
        .arg("mount")
        .arg(&mount_point)
        .current_dir(project.root())
        .env("ENVSNAP_REPOSITORY", &project.repository)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FUSE is not available on this machine: /dev/fuse does not exist"), "{stderr}");
    assert!(stderr.contains("apt-get install fuse3") && stderr.contains("--device /dev/fuse"), "{stderr}");
    assert!(!is_mounted(&mount_point)?, "nothing is mounted");
    Ok(())
}
