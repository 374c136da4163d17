//! Spark event-log files: a single file (plain, or zstd as Spark writes with
//! `spark.eventLog.compression.codec=zstd`) or a rolling `eventlog_v2_<appId>/` directory whose
//! `events_<n>_<appId>[.zstd]` parts are read in order. A directory of such logs yields each.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: compression codec '{codec}' is not supported (only zstd and uncompressed)")]
    Codec { path: PathBuf, codec: String },
    #[error("{0}: no event log found there")]
    Empty(PathBuf),
}

/// One application's log: the files to read, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    pub files: Vec<PathBuf>,
}

/// Finds the event logs at `path`: a file, a rolling log directory, or a directory of logs.
pub fn discover(path: &Path) -> Result<Vec<EventLog>, LogError> {
    let io = |source| LogError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![EventLog {
            files: vec![path.to_owned()],
        }]);
    }
    if is_rolling_dir(path) {
        return Ok(vec![rolling_log(path)?]);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut logs = Vec::new();
    for e in entries {
        let name = file_name(&e);
        if e.is_dir() && is_rolling_dir(&e) {
            logs.push(rolling_log(&e)?);
        } else if e.is_file() && !name.starts_with('.') {
            logs.push(EventLog { files: vec![e] });
        }
    }
    if logs.is_empty() {
        return Err(LogError::Empty(path.to_owned()));
    }
    Ok(logs)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_rolling_dir(p: &Path) -> bool {
    file_name(p).starts_with("eventlog_v2_")
}

/// The `events_<index>_…` files of a rolling log, by index (Spark's `EventLogFileReader`).
fn rolling_log(dir: &Path) -> Result<EventLog, LogError> {
    let rd = std::fs::read_dir(dir).map_err(|source| LogError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut parts: Vec<(u64, PathBuf)> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = file_name(&p);
            let idx = name
                .strip_prefix("events_")?
                .split('_')
                .next()?
                .parse()
                .ok()?;
            Some((idx, p))
        })
        .collect();
    parts.sort();
    if parts.is_empty() {
        return Err(LogError::Empty(dir.to_owned()));
    }
    Ok(EventLog {
        files: parts.into_iter().map(|(_, p)| p).collect(),
    })
}

/// Opens one log file for line reading, decompressing by its name's codec suffix.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>, LogError> {
    const BUF: usize = 1 << 20;
    Ok(Box::new(BufReader::with_capacity(BUF, open_raw(path)?)))
}

/// One file's bytes, decompressed: a truncated zstd frame (a log still being written, or cut
/// short) ends where its data ends.
pub fn open_raw(path: &Path) -> Result<Box<dyn Read + Send>, LogError> {
    let name = file_name(path);
    let base = name.strip_suffix(".inprogress").unwrap_or(&name);
    let file = File::open(path).map_err(|source| LogError::Io {
        path: path.to_owned(),
        source,
    })?;
    let codec = base.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
    match codec {
        "zstd" | "zst" => {
            let dec = zstd::stream::read::Decoder::new(file).map_err(|source| LogError::Io {
                path: path.to_owned(),
                source,
            })?;
            Ok(Box::new(TolerantEof(dec)))
        }
        "lz4" | "lzf" | "snappy" => Err(LogError::Codec {
            path: path.to_owned(),
            codec: codec.to_owned(),
        }),
        _ => Ok(Box::new(file)),
    }
}

/// Reads one file in blocks of whole lines, about `block` bytes each (a longer line makes a
/// longer block), each read straight into its own buffer and handed to `f`. Stops early when
/// `f` returns false.
pub fn for_each_block(
    path: &Path,
    block: usize,
    mut f: impl FnMut(Vec<u8>) -> bool,
) -> Result<(), LogError> {
    let io = |source| LogError::Io {
        path: path.to_owned(),
        source,
    };
    let mut r = open_raw(path)?;
    // `buf` is initialised to its length once; `filled` is how much of it holds data.
    let mut buf = vec![0u8; block];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() + block, 0); // one line longer than a block
        }
        let n = match r.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            buf.truncate(filled);
            if !buf.is_empty() {
                f(buf);
            }
            return Ok(());
        }
        filled += n;
        if filled < buf.len() {
            continue;
        }
        let Some(last) = memchr::memrchr(b'\n', &buf[..filled]) else {
            continue;
        };
        let tail = filled - (last + 1);
        let mut next = vec![0u8; block.max(tail + 1)];
        next[..tail].copy_from_slice(&buf[last + 1..filled]);
        buf.truncate(last + 1);
        if !f(std::mem::replace(&mut buf, next)) {
            return Ok(());
        }
        filled = tail;
    }
}

struct TolerantEof<R>(R);

impl<R: Read> Read for TolerantEof<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

/// Calls `f` with every line of the log, in order, without the newline.
pub fn for_each_line(log: &EventLog, mut f: impl FnMut(&[u8])) -> Result<(), LogError> {
    let mut buf = Vec::with_capacity(64 * 1024);
    for path in &log.files {
        let mut r = open(path)?;
        loop {
            buf.clear();
            let n = r
                .read_until(b'\n', &mut buf)
                .map_err(|source| LogError::Io {
                    path: path.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            f(&buf);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_rolling_zstd_dir_in_index_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("eventlog_v2_local-1");
        std::fs::create_dir(&log).expect("mkdir");
        std::fs::write(log.join("appstatus_local-1.inprogress"), b"").expect("write");
        for (i, text) in [(10, "c\n"), (2, "b\n"), (1, "a\n")] {
            let f = File::create(log.join(format!("events_{i}_local-1.zstd"))).expect("create");
            let mut enc = zstd::Encoder::new(f, 1).expect("encoder");
            enc.write_all(text.as_bytes()).expect("write");
            enc.finish().expect("finish");
        }
        let logs = discover(dir.path()).expect("discover");
        assert_eq!(logs.len(), 1);
        let mut lines = Vec::new();
        for_each_line(&logs[0], |l| {
            lines.push(String::from_utf8_lossy(l).into_owned())
        })
        .expect("read");
        assert_eq!(lines, ["a\n", "b\n", "c\n"]);
    }

    #[test]
    fn truncated_zstd_keeps_what_was_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.zstd");
        let mut enc = zstd::Encoder::new(Vec::new(), 1).expect("encoder");
        enc.write_all(b"line one\nline two\n").expect("write");
        enc.flush().expect("flush");
        let partial = enc.get_ref().clone(); // flushed block, frame not finished
        std::fs::write(&path, partial).expect("write");
        let logs = discover(&path).expect("discover");
        let mut n = 0;
        for_each_line(&logs[0], |_| n += 1).expect("read");
        assert_eq!(n, 2);
    }

    #[test]
    fn unsupported_codec_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.lz4");
        std::fs::write(&path, b"x").expect("write");
        let err = open(&path).err().expect("error");
        assert!(err.to_string().contains("lz4"), "{err}");
    }
}
