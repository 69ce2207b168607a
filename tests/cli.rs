//! The command line as a new user meets it, run as the real binary: bare
//! numbers as seconds, every numeric flag's range (a hostile value is one
//! line and exit status 2, never a panic), the `--help` examples, shell
//! completions and the man page.

mod common;

use std::time::{Duration, Instant};

use common::{Output, run_bounded};

/// The longest one run may take before the test fails.
const LIMIT: Duration = Duration::from_secs(20);

fn sockit(args: &[&str]) -> Output {
    run_bounded(args, LIMIT)
}

/// Asserts a usage error: status 2, nothing on stdout, one line on stderr.
fn usage_error(args: &[&str]) -> String {
    let out = sockit(args);
    assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
    assert_eq!(out.stdout, "", "{args:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {:?}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
    out.stderr.trim_end().to_owned()
}

/// Runs `args` with `flag VALUE` appended for each value and asserts each
/// is a one-line usage error naming `flag` (a long flag) and containing
/// `range`.
fn refuses(args: &[&str], flag: &str, values: &[&str], range: &str) {
    for value in values {
        // `--flag=VALUE`, so that `-inf` is not taken for flags.
        let arg = format!("{flag}={value}");
        let mut full = args.to_vec();
        full.push(&arg);
        let line = usage_error(&full);
        assert!(line.starts_with("sockit: "), "{full:?}: {line}");
        assert!(
            line.contains(&format!("{flag} ")),
            "{full:?} does not name {flag}: {line}"
        );
        assert!(
            line.contains(range),
            "{full:?} does not say {range:?}: {line}"
        );
    }
}

/// Values that no numeric flag takes.
const HOSTILE: &[&str] = &[
    "-1",
    "1e308",
    "NaN",
    "inf",
    "-inf",
    "99999999999999999999999",
];

#[test]
fn whole_number_flags_name_their_range() {
    let serve = ["serve", "echo", "-l", "tcp://127.0.0.1:0"];
    let ping = ["ping", "tcp://127.0.0.1:1"];
    let bench = ["bench", "tcp://127.0.0.1:1"];
    for (args, flag, range) in [
        (
            &serve[..],
            "--max-conns",
            "a whole number from 1 to 1000000",
        ),
        (&serve, "--udp-rate", "a whole number from 0 to 1000000"),
        (&ping, "--count", "a whole number from 1 to 1000000000"),
        (&bench, "--connections", "a whole number from 1 to 10000"),
        (&bench, "--pipeline", "a whole number from 1 to 4096"),
        (&bench, "--threads", "a whole number from 1 to 1024"),
    ] {
        refuses(args, flag, HOSTILE, range);
    }
    refuses(
        &serve,
        "--max-conns",
        &["0", "1000001"],
        "from 1 to 1000000",
    );
    refuses(&serve, "--udp-rate", &["1000001"], "from 0 to 1000000");
    refuses(&ping, "--count", &["0", "1.5"], "from 1 to 1000000000");
    refuses(&bench, "--connections", &["0", "10001"], "from 1 to 10000");
    refuses(&bench, "--pipeline", &["0", "4097"], "from 1 to 4096");
    refuses(&bench, "--threads", &["0", "1025"], "from 1 to 1024");
    // A short flag is named by its long form.
    let line = usage_error(&["ping", "tcp://127.0.0.1:1", "-c", "0"]);
    assert!(line.contains("'--count <COUNT>'"), "{line}");
}

#[test]
fn duration_flags_refuse_hostile_values() {
    let flags: &[(&[&str], &str)] = &[
        (
            &["serve", "echo", "-l", "tcp://127.0.0.1:0"],
            "--idle-timeout",
        ),
        (&["serve", "echo", "-l", "tcp://127.0.0.1:0"], "--grace"),
        (&["connect", "tcp://127.0.0.1:1"], "--timeout"),
        (&["send", "tcp://127.0.0.1:1", "hi"], "--timeout"),
        (&["ping", "tcp://127.0.0.1:1"], "-i"),
        (&["ping", "tcp://127.0.0.1:1"], "-w"),
        (&["ping", "tcp://127.0.0.1:1"], "-W"),
        (&["bench", "tcp://127.0.0.1:1"], "-d"),
        (&["bench", "tcp://127.0.0.1:1"], "--warmup"),
        (&["bench", "tcp://127.0.0.1:1"], "--timeout"),
    ];
    for (args, flag) in flags {
        for (value, why) in [
            ("-1", "must not be negative"),
            ("-0.5", "must not be negative"),
            ("NaN", "expected seconds (0.2, 5) or a number with a unit"),
            ("inf", "expected seconds"),
            ("1e308", "unknown unit \"e308\""),
            ("9999999999", "at most 8760h"),
            ("8761h", "at most 8760h"),
            ("soon", "expected seconds"),
        ] {
            let mut full = args.to_vec();
            full.extend_from_slice(&[flag, value]);
            let line = usage_error(&full);
            assert!(line.contains("invalid duration"), "{full:?}: {line}");
            assert!(line.contains(why), "{full:?}: {line}");
        }
    }
}

#[test]
fn zero_is_refused_where_it_means_nothing() {
    for (args, flag) in [
        (&["send", "tcp://127.0.0.1:1", "hi"][..], "--timeout"),
        (&["ping", "tcp://127.0.0.1:1"], "--deadline"),
        (&["bench", "tcp://127.0.0.1:1"], "--duration"),
        (&["bench", "tcp://127.0.0.1:1"], "--timeout"),
    ] {
        refuses(args, flag, &["0", "0s", "0.0"], "must be more than 0");
    }
}

#[test]
fn size_rate_and_fraction_flags_name_their_range() {
    let serve = ["serve", "echo", "-l", "tcp://127.0.0.1:0"];
    refuses(
        &serve,
        "--max-line",
        &["0", "17MiB"],
        "must be between 1 byte and 16MiB",
    );
    refuses(
        &serve,
        "--max-line",
        &["-1", "NaN"],
        "expected a number of bytes",
    );
    refuses(
        &["bench", "tcp://127.0.0.1:1"],
        "--rate",
        &["0", "1e-20", "0.0001", "1e9", "-5", "NaN", "inf", "fast"],
        "must be between 0.001 and 100000000 requests per second",
    );
    for flag in [
        "--simulate-loss",
        "--simulate-duplicate",
        "--simulate-reorder",
    ] {
        refuses(
            &["peer", "-l", "udp://127.0.0.1:0"],
            flag,
            &["1.5", "-0.1", "1e308", "NaN", "inf"],
            "expected a fraction from 0 to 1",
        );
    }
    let line = usage_error(&["ping", "tcp://127.0.0.1:1", "-s", "70000"]);
    assert!(
        line.contains("-s/--size 70000: at most 65507 bytes"),
        "{line}"
    );
    let line = usage_error(&["bench", "udp://127.0.0.1:1", "-s", "70000"]);
    assert!(
        line.contains("-s/--size 70000: at most 65507 bytes over udp"),
        "{line}"
    );
    let line = usage_error(&["bench", "tcp://127.0.0.1:1", "-s", "3"]);
    assert!(line.contains("-s/--size 3: at least 5 bytes"), "{line}");
}

#[test]
fn config_file_values_are_checked_like_flags() {
    let dir = common::TempDir::new("cli-config");
    for (text, want) in [
        (
            "max_conns = 99999999999999",
            "max_conns 99999999999999: must be between 1 and 1000000",
        ),
        (
            "max_conns = 0",
            "max_conns 0: must be between 1 and 1000000",
        ),
        (
            "udp_rate = 4000000000",
            "udp_rate 4000000000: must be between 0",
        ),
        ("max_line = \"1GiB\"", "unknown unit"),
        (
            "idle_timeout = -1",
            "idle_timeout: invalid duration \"-1\": must not be negative",
        ),
        (
            "idle_timeout = nan",
            "idle_timeout: invalid duration \"NaN\"",
        ),
        (
            "idle_timeout = inf",
            "idle_timeout: invalid duration \"inf\"",
        ),
        ("idle_timeout = 1e308", "idle_timeout: invalid duration"),
        ("idle_timeout = \"9999h\"", "at most 8760h"),
    ] {
        let file = dir.path("bad.toml");
        let body =
            format!("[[service]]\nname = \"echo\"\nlisten = [\"tcp://127.0.0.1:0\"]\n{text}\n");
        std::fs::write(&file, body).unwrap();
        let line = usage_error(&["serve", "--config", &file]);
        assert!(line.contains(&file), "{text}: {line}");
        assert!(line.contains(want), "{text}: {line}");
    }
}

/// Starts `sockit serve ping` on a TCP port of its choosing.
fn ping_server() -> common::Proc {
    common::serve(&["ping", "-q", "-l", "tcp://127.0.0.1:0"], 1)
}

#[test]
fn ping_takes_bare_seconds_as_ping8_does() {
    let server = ping_server();
    let addr = &server.addrs[0];
    let out = sockit(&["ping", addr, "-i", "0.2", "-w", "5", "-c", "3"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("3 sent, 3 received, 0% loss"),
        "{}",
        out.stdout
    );
}

#[test]
fn ping_ends_at_a_bare_seconds_deadline() {
    let server = ping_server();
    let addr = &server.addrs[0];
    let started = Instant::now();
    let out = sockit(&["ping", addr, "-i", "0.2", "-w", "1"]);
    let took = started.elapsed();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(took >= Duration::from_secs(1), "ended early: {took:?}");
    // The deadline, plus starting a process and printing the summary.
    assert!(took < Duration::from_millis(2500), "ended late: {took:?}");
    // About five requests in a second, one every 200ms.
    let sent: u32 = out
        .stdout
        .lines()
        .find_map(|l| l.split_once(" sent, ").map(|(n, _)| n.parse().unwrap()))
        .unwrap_or_else(|| panic!("no summary in {}", out.stdout));
    assert!((4..=6).contains(&sent), "{sent} sent: {}", out.stdout);
}

/// The subcommands whose `--help` ends with examples.
const SUBCOMMANDS: &[&str] = &[
    "serve",
    "connect",
    "send",
    "ping",
    "bench",
    "chat",
    "peer",
    "completions",
    "man",
];

/// The commands in the `Examples:` section at the end of `help`, as
/// argument lists (comments, pipes into them and redirections dropped).
fn examples(help: &str) -> Vec<Vec<String>> {
    let (_, section) = help
        .rsplit_once("\nExamples:\n")
        .unwrap_or_else(|| panic!("no Examples: section in {help}"));
    section
        .lines()
        .map(|line| {
            let line = line.split(" #").next().unwrap();
            let line = line.rsplit('|').next().unwrap();
            let line = line.split(['>', '&']).next().unwrap();
            line.split_whitespace().map(str::to_owned).collect()
        })
        .collect()
}

#[test]
fn long_help_ends_with_examples_that_parse() {
    use clap::Parser;
    for sub in SUBCOMMANDS {
        let long = sockit(&[sub, "--help"]);
        assert_eq!(long.code, Some(0), "{sub}: {long:?}");
        let commands = examples(&long.stdout);
        assert!(commands.len() >= 3, "{sub}: {commands:?}");
        for argv in commands {
            assert_eq!(argv[..2], ["sockit", *sub], "{argv:?}");
            if let Err(e) = sockit::cli::Cli::try_parse_from(&argv) {
                panic!("{argv:?} does not parse: {e}");
            }
        }
        // The short help stays short.
        let short = sockit(&[sub, "-h"]);
        assert!(
            !short.stdout.contains("Examples:"),
            "{sub}: {}",
            short.stdout
        );
    }
    // The notes that ping and bench had after their options are still there.
    let ping = sockit(&["ping", "--help"]).stdout;
    assert!(ping.contains("Exit status 0 only if a reply came back."));
    let bench = sockit(&["bench", "--help"]).stdout;
    assert!(bench.contains("Exit status 1 if no request completed."));
}

#[test]
fn completions_for_every_shell() {
    let bash = sockit(&["completions", "bash"]);
    assert_eq!(bash.code, Some(0), "{bash:?}");
    assert!(bash.stdout.contains("sockit"), "{}", bash.stdout);
    assert!(bash.stdout.contains("serve"), "{}", bash.stdout);
    assert!(bash.stdout.contains("--max-conns"), "{}", bash.stdout);
    assert_eq!(bash.stderr, "");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = sockit(&["completions", shell]);
        assert_eq!(out.code, Some(0), "{shell}: {out:?}");
        assert!(out.stdout.contains("sockit"), "{shell}: {}", out.stdout);
        assert!(out.stdout.contains("serve"), "{shell}: {}", out.stdout);
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let line = usage_error(&["completions", "tcsh"]);
    assert!(line.starts_with("sockit: invalid value 'tcsh'"), "{line}");
    assert!(line.contains("bash"), "{line}");
    let out = sockit(&["completions"]);
    assert_eq!(out.code, Some(2), "{out:?}");
}

#[test]
fn man_prints_a_roff_page() {
    let out = sockit(&["man"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stderr, "");
    let page = out.stdout;
    assert!(page.starts_with('.'), "{page:.200}");
    assert!(page.contains(".TH sockit 1"), "{page:.400}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section} in {page:.400}");
    }
    assert!(page.contains("sockit\\-serve"), "{page}");
}
