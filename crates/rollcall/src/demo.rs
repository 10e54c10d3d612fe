pub fn main(_args: crate::cli::DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("todo")
}
