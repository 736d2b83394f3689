//! Compile tests of `#[conveyor::task]`: what compiles, and the errors users see on misuse.

#[test]
fn task_macro_ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
