//! The shell around the pure model and view: the terminal (alternate screen, raw mode,
//! restored on quit, on SIGINT/SIGTERM/SIGHUP and on panic), keys, the frame rate, and the
//! source's worker thread.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};

use crate::model::{Capture, Cmd, Control, Key, Model, Msg, Speed};
use crate::source::{self, Source};
use crate::view;

/// At most this many frames per second; keys draw at once.
const FRAME: Duration = Duration::from_millis(33);
const CHANNEL: usize = 4;

pub struct Options {
    pub label: String,
    pub color: bool,
    pub speed: Speed,
    /// Where `e` writes the exported stories.
    pub export_dir: std::path::PathBuf,
    /// A live capture's counters, kept current by the capture (`kcdscope watch --tui`);
    /// shown in the header.
    pub capture: Option<Arc<Mutex<Capture>>>,
}

fn key_of(k: event::KeyEvent) -> Option<Key> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    Some(match k.code {
        KeyCode::Char('c') if ctrl => Key::CtrlC,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

/// OSC 52: the terminal (or tmux, or the SSH client's terminal) puts the text on the
/// clipboard; works where no clipboard tool does.
fn osc52(text: &str) -> std::io::Result<()> {
    use base64::Engine as _;
    let mut o = std::io::stdout().lock();
    write!(o, "\x1b]52;c;{}\x07", base64::engine::general_purpose::STANDARD.encode(text))?;
    o.flush()
}

fn export(dir: &std::path::Path, name: &str, ndjson: &str, markdown: &str) -> std::io::Result<String> {
    let base = dir.join(name);
    let nd = base.with_extension("ndjson");
    let md = base.with_extension("md");
    std::fs::write(&nd, ndjson)?;
    std::fs::write(&md, markdown)?;
    Ok(format!("exported {} and {}", nd.display(), md.display()))
}

/// Runs the UI until the user quits or a signal asks to stop.
pub fn run(src: Source, opts: Options) -> std::io::Result<()> {
    let replay = matches!(src, Source::Replay { .. });
    let mut model = Model::new(opts.label.clone(), replay, opts.color);
    model.speed = opts.speed;
    let (tx, rx) = mpsc::sync_channel::<Msg>(CHANNEL);
    let (ctl_tx, ctl_rx) = mpsc::channel::<Control>();
    let speed = opts.speed;
    let worker = std::thread::Builder::new().name("source".into()).spawn(move || source::run(src, tx, ctl_rx, speed))?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // Alternate screen and raw mode, with a panic hook that restores the terminal.
    let mut terminal = ratatui::init();
    // Keys are read on a thread of their own: on a terminal that has hung up, crossterm's
    // read can keep returning without an event, and the loop below must still see the
    // signal flags and the terminal's end. The thread ends with the process.
    let (term_tx, term_rx) = mpsc::sync_channel::<TermEvent>(64);
    std::thread::Builder::new().name("input".into()).spawn(move || {
        while let Ok(e) = event::read() {
            if term_tx.send(e).is_err() {
                return;
            }
        }
    })?;
    let result = ui_loop(&mut terminal, &mut model, &rx, &term_rx, &ctl_tx, &stop, &opts);
    ratatui::restore();
    drop(ctl_tx);
    drop(rx);
    let _ = worker.join();
    result
}

fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    model: &mut Model,
    rx: &mpsc::Receiver<Msg>,
    input: &mpsc::Receiver<TermEvent>,
    ctl: &mpsc::Sender<Control>,
    stop: &AtomicBool,
    opts: &Options,
) -> std::io::Result<()> {
    let t0 = Instant::now();
    let mut last_draw = Instant::now() - FRAME;
    let size = terminal.size()?;
    model.update(Msg::Resize(size.width, size.height));
    loop {
        if stop.load(Ordering::Relaxed) || model.quit {
            return Ok(());
        }
        // A terminal that hung up (an SSH session or tmux server gone) reads as end of file
        // and polls ready at once; without this check the loop would spin. Its ioctls fail
        // from then on, so it is no longer a terminal.
        if !std::io::stdout().is_terminal() {
            return Ok(());
        }
        // Everything the source sent, within a bound so keys stay responsive.
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(m) => {
                    model.update(m);
                }
                Err(_) => break,
            }
        }
        if let Some(c) = opts.capture.as_ref().and_then(|c| c.lock().ok().map(|g| g.clone())) {
            model.update(Msg::Capture(c));
        }
        model.update(Msg::Tick(t0.elapsed().as_millis() as u64));
        let mut key_pressed = false;
        if let Ok(ev) = input.recv_timeout(Duration::from_millis(15)) {
            match ev {
                TermEvent::Key(k) => {
                    if let Some(k) = key_of(k) {
                        key_pressed = true;
                        match model.update(Msg::Key(k)) {
                            Cmd::Quit => return Ok(()),
                            Cmd::Control(c) => {
                                let _ = ctl.send(c);
                            }
                            Cmd::Copy(text) => {
                                if let Err(e) = osc52(&text) {
                                    model.message = Some(format!("copy failed: {e}"));
                                }
                            }
                            Cmd::Export { name, ndjson, markdown } => {
                                model.message = Some(match export(&opts.export_dir, &name, &ndjson, &markdown) {
                                    Ok(m) => m,
                                    Err(e) => format!("export failed: {e}"),
                                });
                            }
                            Cmd::None => {}
                        }
                    }
                }
                TermEvent::Resize(w, h) => {
                    model.update(Msg::Resize(w, h));
                }
                _ => {}
            }
        }
        if model.dirty && (key_pressed || last_draw.elapsed() >= FRAME) {
            terminal.draw(|f| view::draw(model, f))?;
            model.dirty = false;
            last_draw = Instant::now();
        }
    }
}
