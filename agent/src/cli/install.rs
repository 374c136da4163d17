//! Where the installed pieces are: the listener jar shipped beside the `sparkscope` binary (in
//! the Python package the wheel installs, or a source checkout's build), Spark itself (the
//! pyspark of the same environment) and the user's sparkscope directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The jar's name inside the Python package (`sparkscope/jars/`) and in a checkout's build.
pub const LISTENER_JAR: &str = "sparkscope-listener.jar";
/// The listener's class, for `spark.extraListeners`.
pub const LISTENER_CLASS: &str = "io.sparkscope.listener.SparkscopeListener";

/// What could not be found, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum NotFound {
    #[error(
        "no listener jar beside {exe}: looked in {looked}. Install sparkscope from its wheel \
         (pip install sparkscope) or set SPARKSCOPE_LISTENER_JAR"
    )]
    ListenerJar { exe: String, looked: String },
    #[error("SPARKSCOPE_LISTENER_JAR names {0}, which is not a file")]
    ListenerJarEnv(String),
    #[error(
        "no Spark found: set SPARK_HOME, or install pyspark in the same environment \
         (pip install 'pyspark[connect]'); {0}"
    )]
    Spark(String),
}

/// The listener jar: `SPARKSCOPE_LISTENER_JAR`, else the one installed with this binary.
pub fn listener_jar() -> Result<PathBuf, NotFound> {
    if let Some(path) = std::env::var_os("SPARKSCOPE_LISTENER_JAR") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(NotFound::ListenerJarEnv(path.display().to_string()))
        };
    }
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .unwrap_or_default();
    let candidates = jar_candidates(&exe);
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| NotFound::ListenerJar {
            exe: exe.display().to_string(),
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Where a jar installed with the binary at `exe` can be: a wheel puts the binary in
/// `<prefix>/bin` and the package in `<prefix>/lib/pythonX.Y/site-packages/sparkscope` (venvs,
/// `--user` installs under ~/.local, system prefixes); a checkout's binary is
/// `target/<profile>/sparkscope` and its jar `listener-jar/target/`.
fn jar_candidates(exe: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Some(bin) = exe.parent() else {
        return out;
    };
    if let Some(prefix) = bin.parent() {
        let mut libs: Vec<PathBuf> = std::fs::read_dir(prefix.join("lib"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python"))
            })
            .collect();
        libs.sort();
        for lib in libs.iter().rev() {
            out.push(
                lib.join("site-packages")
                    .join("sparkscope")
                    .join("jars")
                    .join(LISTENER_JAR),
            );
        }
        // Windows venvs: <prefix>\Scripts\sparkscope.exe and <prefix>\Lib\site-packages.
        out.push(
            prefix
                .join("Lib")
                .join("site-packages")
                .join("sparkscope")
                .join("jars")
                .join(LISTENER_JAR),
        );
        if let Some(repo) = prefix.parent() {
            out.push(repo.join("listener-jar").join("target").join(LISTENER_JAR));
        }
    }
    out
}

/// Spark's home: `explicit`, else SPARK_HOME, else the pyspark importable by the Python beside
/// this binary (the environment the wheel went into), else by `python3` on PATH.
pub fn spark_home(explicit: Option<&Path>) -> Result<PathBuf, NotFound> {
    if let Some(p) = explicit {
        return checked_spark_home(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("SPARK_HOME").filter(|p| !p.is_empty()) {
        return checked_spark_home(PathBuf::from(p));
    }
    let mut pythons = Vec::new();
    // The wheel installs the binary into the environment's bin, beside its Python.
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        pythons.push(bin.join("python3"));
        pythons.push(bin.join("python"));
    }
    pythons.push(PathBuf::from("python3"));
    let mut tried = Vec::new();
    for python in pythons {
        let out = Command::new(&python)
            .args([
                "-c",
                "import os, pyspark; print(os.path.dirname(pyspark.__file__))",
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let home = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                return checked_spark_home(PathBuf::from(home));
            }
            Ok(_) => tried.push(format!("{} has no pyspark", python.display())),
            Err(_) => {}
        }
    }
    Err(NotFound::Spark(if tried.is_empty() {
        "no Python found".to_owned()
    } else {
        tried.join("; ")
    }))
}

fn checked_spark_home(home: PathBuf) -> Result<PathBuf, NotFound> {
    if home.join("bin").join("spark-submit").is_file() {
        Ok(home)
    } else {
        Err(NotFound::Spark(format!(
            "{} has no bin/spark-submit",
            home.display()
        )))
    }
}

pub use sparkscope::config::user_dir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jar_is_looked_for_in_every_python_of_the_prefix_and_in_a_checkout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = dir.path().join("venv");
        let jars = prefix.join("lib/python3.12/site-packages/sparkscope/jars");
        std::fs::create_dir_all(&jars).expect("mkdir");
        std::fs::create_dir_all(prefix.join("lib/python3.11")).expect("mkdir");
        std::fs::write(jars.join(LISTENER_JAR), b"PK").expect("write");
        let found = jar_candidates(&prefix.join("bin/sparkscope"));
        assert_eq!(
            found[0],
            jars.join(LISTENER_JAR),
            "newest Python first: {found:?}"
        );
        assert!(found.iter().any(
            |p| p.ends_with("lib/python3.11/site-packages/sparkscope/jars/sparkscope-listener.jar")
        ));
        let checkout = jar_candidates(&dir.path().join("repo/target/release/sparkscope"));
        assert!(
            checkout.contains(
                &dir.path()
                    .join("repo/listener-jar/target")
                    .join(LISTENER_JAR)
            ),
            "{checkout:?}"
        );
    }
}
