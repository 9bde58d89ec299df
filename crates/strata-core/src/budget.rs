//! A backstop under minijinja's fuel: the memory one render takes on its thread.
//!
//! Fuel charges nearly everything a template makes (crate::render), but not all: minijinja
//! 3.1 builds a list made by more than 32 chained `+` at once, without charging for it
//! (`{% set l = l + l %}` 33 times asks for 2^33 items). Such a render cannot be stopped
//! from inside (minijinja calls nothing of strata's while it builds the list) and a
//! failing allocation aborts the process, so the program's allocator counts what each
//! rendering thread holds, and past [`TEMPLATE_MEMORY`] ends the process at once (exit
//! status 1) with the template named. Renders run while the catalog is compiled, before
//! anything is written, so nothing on the target has changed; a render during a commit
//! is one that succeeded in an earlier compile with the same text and context, so it does
//! the same again. Fuel stops every other runaway template first, with an ordinary error:
//! the most fuel let a hostile template take, measured, is 0.68 GB for the whole process
//! (docs/decisions.md, "Templates").
//!
//! Only a program that installs [`RenderAllocator`] as its global allocator has the
//! backstop (the `strata` binary does); it costs one thread-local read per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

/// The most one render may hold at once on its thread: 1 GiB.
pub const TEMPLATE_MEMORY: isize = 1 << 30;

/// [`TEMPLATE_MEMORY`], lowered by tests.
static BUDGET: AtomicIsize = AtomicIsize::new(TEMPLATE_MEMORY);

/// The render running on a thread: the template's name (a borrowed string, valid while
/// [`Watch`] lives) and the bytes allocated minus those freed since it began.
#[derive(Clone, Copy)]
struct Render {
    name: *const u8,
    len: usize,
    live: isize,
}

const IDLE: Render = Render {
    name: std::ptr::null(),
    len: 0,
    live: 0,
};

thread_local! {
    static RENDER: Cell<Render> = const { Cell::new(IDLE) };
}

/// Counts what the current thread allocates until dropped, on behalf of template `name`.
pub(crate) struct Watch<'a> {
    _name: std::marker::PhantomData<&'a str>,
}

/// Starts counting the current thread's allocations for a render of `name`.
pub(crate) fn watch(name: &str) -> Watch<'_> {
    RENDER.with(|r| {
        r.set(Render {
            name: name.as_ptr(),
            len: name.len(),
            live: 0,
        });
    });
    Watch {
        _name: std::marker::PhantomData,
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        RENDER.with(|r| r.set(IDLE));
    }
}

/// The system allocator, counting what a render holds (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct RenderAllocator;

fn charge(bytes: isize) {
    let _ = RENDER.try_with(|r| {
        let mut render = r.get();
        if render.name.is_null() {
            return;
        }
        render.live = render.live.saturating_add(bytes);
        r.set(render);
        if bytes > 0 {
            let budget = BUDGET.load(Ordering::Relaxed);
            if render.live > budget {
                over(render, budget);
            }
        }
    });
}

/// Reports the template and ends the process, without allocating.
fn over(render: Render, budget: isize) -> ! {
    // SAFETY: `name`/`len` come from a `&str` that outlives the `Watch` that set them,
    // and the watch is live (the render is running on this thread).
    let name = unsafe { std::slice::from_raw_parts(render.name, render.len) };
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut mib = budget >> 20;
    loop {
        at -= 1;
        digits[at] = b'0' + (mib % 10) as u8;
        mib /= 10;
        if mib == 0 {
            break;
        }
    }
    let parts: [&[u8]; 5] = [
        b"error: ",
        name,
        b": the template holds more than ",
        &digits[at..],
        b" MiB of memory, the most a template may take (docs/decisions.md, \"Templates\"); \
          nothing was written\n",
    ];
    for part in parts {
        // SAFETY: writes a valid buffer to standard error; a failure is ignored.
        unsafe {
            libc::write(2, part.as_ptr().cast(), part.len());
        }
    }
    // SAFETY: ends the process at once; the kernel releases its lock and files.
    unsafe { libc::_exit(1) }
}

// SAFETY: every call goes to `System` unchanged; `charge` only reads and writes a
// thread-local cell (const-initialised, no destructor: always accessible) and never
// allocates.
unsafe impl GlobalAlloc for RenderAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        charge(layout.size() as isize);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        charge(layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        charge(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        charge(new_size as isize - layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list built by doubling, which minijinja builds without charging fuel.
    const DOUBLED: &str = "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}\
                           {% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}";

    const CHILD: &str = "STRATA_TEST_BUDGET_CHILD";

    /// Run again in a child process (the test binary installs the allocator, crate
    /// root), with a budget of 16 MiB: the render ends the process, naming the template.
    #[test]
    fn a_render_past_its_memory_ends_the_process_naming_the_template() {
        let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({})));
        if std::env::var_os(CHILD).is_some() {
            BUDGET.store(16 << 20, Ordering::Relaxed);
            let r = crate::render::Renderer::new();
            // Ordinary renders are untouched by the budget.
            assert_eq!(r.render("ok.j2", "{{ 1 + 1 }}", &ctx).unwrap(), "2");
            let res = r.render("modules/m/templates/list.j2", DOUBLED, &ctx);
            panic!("the render came back: {res:?}");
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "budget::tests::a_render_past_its_memory_ends_the_process_naming_the_template",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(
                "error: modules/m/templates/list.j2: the template holds more than 16 MiB of \
                 memory, the most a template may take (docs/decisions.md, \"Templates\"); \
                 nothing was written\n"
            ),
            "{stderr}"
        );
    }
}
