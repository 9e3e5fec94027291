//! The admin unix socket: created with mode 0600 without a window in which anyone else could
//! connect, and removed again when the server goes away.
//!
//! `bind(2)` creates the socket file with the process umask, and `chmod` afterwards leaves a
//! window in which another user could connect. So the socket is bound inside a fresh private
//! directory (mode 0700, next to the final path so it is on the same filesystem), chmod-ed to 0600
//! there, and only then linked to its final name. Nobody but us can reach it before it has its final
//! mode. The link is a hard link, which fails instead of replacing a file that appeared meanwhile.
//!
//! A socket file left behind by a crashed server is removed only if connecting to it is refused;
//! if something answers, another server is running and we refuse to start.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::server::ServerError;

/// The socket file we created; removed on drop if it is still ours.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl SocketFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Another server may have replaced the file since (after we were declared stale):
        // only remove the inode we created.
        if let Ok(metadata) = fs::symlink_metadata(&self.path) {
            if metadata.dev() == self.device && metadata.ino() == self.inode {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds and listens on `path` with mode 0600.
pub(crate) fn bind(path: &Path) -> Result<(mio::net::UnixListener, SocketFile), ServerError> {
    let failed = |error: io::Error| ServerError::BindUnix { path: path.to_owned(), error };
    remove_stale(path)?;

    let file_name = path.file_name().ok_or_else(|| {
        failed(io::Error::new(io::ErrorKind::InvalidInput, "the path names a directory, not a socket file"))
    })?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let private_dir = PrivateDir::create(parent).map_err(failed)?;
    let private_path = private_dir.path.join(file_name);

    let listener = std::os::unix::net::UnixListener::bind(&private_path).map_err(failed)?;
    fs::set_permissions(&private_path, fs::Permissions::from_mode(0o600)).map_err(failed)?;
    match fs::hard_link(&private_path, path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(ServerError::UnixSocketInUse { path: path.to_owned() });
        }
        // Some filesystems refuse hard links; we checked that the name is free just above.
        Err(_) => fs::rename(&private_path, path).map_err(failed)?,
    }
    drop(private_dir);

    let metadata = fs::symlink_metadata(path).map_err(failed)?;
    listener.set_nonblocking(true).map_err(failed)?;
    let file = SocketFile { path: path.to_owned(), device: metadata.dev(), inode: metadata.ino() };
    Ok((mio::net::UnixListener::from_std(listener), file))
}

/// Removes a socket file nobody listens on any more; refuses to touch anything else.
fn remove_stale(path: &Path) -> Result<(), ServerError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(ServerError::BindUnix { path: path.to_owned(), error }),
    };
    if !metadata.file_type().is_socket() {
        return Err(ServerError::NotASocket { path: path.to_owned() });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ServerError::UnixSocketInUse { path: path.to_owned() }),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(|error| ServerError::BindUnix { path: path.to_owned(), error })
        }
        Err(error) => Err(ServerError::BindUnix { path: path.to_owned(), error }),
    }
}

/// A directory only we can enter, removed with whatever is left in it on drop.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn create(parent: &Path) -> io::Result<PrivateDir> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Short, so that the temporary socket path fits `sun_path` whenever the final one does
        // with a little room to spare.
        let name = format!(".ol{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = parent.join(name);
        fs::DirBuilder::new().mode(0o700).create(&path)?;
        let dir = PrivateDir { path };
        // The umask can only have removed bits; make it exactly 0700 so we can bind inside.
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(0o700))?;
        Ok(dir)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The connecting process's uid and pid, from `SO_PEERCRED`.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
pub(crate) fn peer_credentials(stream: &mio::net::UnixStream) -> (Option<u32>, Option<i32>) {
    use std::os::fd::AsRawFd;

    let mut credentials = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let Ok(expected) = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()) else {
        return (None, None);
    };
    let mut length = expected;
    // SAFETY: the descriptor belongs to `stream`, which is borrowed for the whole call, so it stays
    // open; `credentials` is a live, aligned `ucred` and `length` is exactly its size, so the kernel
    // writes at most that many bytes into it and stores the written size in `length`.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(credentials).cast(),
            &mut length,
        )
    };
    if result != 0 || length != expected {
        return (None, None);
    }
    // A pid of 0 means the peer is in a pid namespace we cannot see.
    (Some(credentials.uid), (credentials.pid > 0).then_some(credentials.pid))
}

/// Peer credentials are only implemented for Linux.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn peer_credentials(_stream: &mio::net::UnixStream) -> (Option<u32>, Option<i32>) {
    (None, None)
}
