//! Ingest throughput: parse + apply, lines per second on one core.
//!
//! `event_log`: an event log's mix, dominated by task start/end lines of Spark 4.3's size and
//! shape (what `sparkscope replay` reads). `live_stream`: what a listener sends, coalesced
//! progress lines plus job and stage events. Set SPARKSCOPE_BENCH_LOG to a real event-log file
//! (plain) to measure that file instead of the built-in mix.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sparkscope::ingest::ingest_line;
use sparkscope::model::{AppState, Retention};

const TASK_START: &str = r#"{"Event":"SparkListenerTaskStart","Stage ID":STAGE,"Stage Attempt ID":0,"Task Info":{"Task ID":TASK,"Index":TASK,"Attempt":0,"Partition ID":TASK,"Launch Time":1795255538101,"Executor ID":"driver","Host":"127.0.0.1","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Finish Time":0,"Failed":false,"Killed":false,"Accumulables":[]}}"#;

const TASK_END: &str = r#"{"Event":"SparkListenerTaskEnd","Stage ID":STAGE,"Stage Attempt ID":0,"Task Type":"ShuffleMapTask","Task End Reason":{"Reason":"Success"},"Task Info":{"Task ID":TASK,"Index":TASK,"Attempt":0,"Partition ID":TASK,"Launch Time":1795255538101,"Executor ID":"driver","Host":"127.0.0.1","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Finish Time":1795255538190,"Failed":false,"Killed":false,"Accumulables":[{"ID":1085,"Name":"number of output rows","Update":"2500","Value":"2500000","Internal":true,"Count Failed Values":true,"Metadata":"sql"},{"ID":1110,"Name":"internal.metrics.executorRunTime","Update":61,"Value":23011,"Internal":true,"Count Failed Values":true},{"ID":1111,"Name":"internal.metrics.executorCpuTime","Update":40113270,"Value":17716121063,"Internal":true,"Count Failed Values":true},{"ID":1112,"Name":"internal.metrics.resultSize","Update":2344,"Value":937600,"Internal":true,"Count Failed Values":true},{"ID":1126,"Name":"internal.metrics.shuffle.write.bytesWritten","Update":1430,"Value":572000,"Internal":true,"Count Failed Values":true}]},"Task Executor Metrics":{"JVMHeapMemory":0,"JVMOffHeapMemory":0,"OnHeapExecutionMemory":0,"OffHeapExecutionMemory":0,"OnHeapStorageMemory":0,"OffHeapStorageMemory":0,"OnHeapUnifiedMemory":0,"OffHeapUnifiedMemory":0,"DirectPoolMemory":0,"MappedPoolMemory":0,"ProcessTreeJVMVMemory":0,"ProcessTreeJVMRSSMemory":0,"ProcessTreePythonVMemory":0,"ProcessTreePythonRSSMemory":0,"ProcessTreeOtherVMemory":0,"ProcessTreeOtherRSSMemory":0,"MinorGCCount":0,"MinorGCTime":0,"MajorGCCount":0,"MajorGCTime":0,"TotalGCTime":0},"Task Metrics":{"Executor Deserialize Time":3,"Executor Deserialize CPU Time":2601373,"Executor Run Time":61,"Executor CPU Time":40113270,"Peak Execution Memory":0,"Result Size":2344,"JVM GC Time":0,"Result Serialization Time":0,"Memory Bytes Spilled":0,"Disk Bytes Spilled":0,"Shuffle Read Metrics":{"Remote Blocks Fetched":0,"Local Blocks Fetched":0,"Fetch Wait Time":0,"Remote Bytes Read":0,"Remote Bytes Read To Disk":0,"Local Bytes Read":0,"Total Records Read":0,"Remote Requests Duration":0,"Push Based Shuffle":{"Corrupt Merged Block Chunks":0,"Merged Fetch Fallback Count":0,"Merged Remote Blocks Fetched":0,"Merged Local Blocks Fetched":0,"Merged Remote Chunks Fetched":0,"Merged Local Chunks Fetched":0,"Merged Remote Bytes Read":0,"Merged Local Bytes Read":0,"Merged Remote Requests Duration":0}},"Shuffle Write Metrics":{"Shuffle Bytes Written":1430,"Shuffle Write Time":1004560,"Shuffle Records Written":1},"Input Metrics":{"Bytes Read":0,"Records Read":0},"Output Metrics":{"Bytes Written":0,"Records Written":0},"Updated Blocks":[]}}"#;

const PROGRESS: &str = r#"{"Event":"SparkscopeStageProgress","time":1795255538101,"stageId":STAGE,"stageAttemptId":0,"started":TASK,"succeeded":TASK,"failed":0,"killed":0,"executorRunTime":5321,"executorCpuTime":4100000000,"inputBytes":1048576,"outputBytes":0,"shuffleReadBytes":0,"shuffleWriteBytes":2048}"#;

const TASKS_PER_STAGE: usize = 200;
const STAGES: usize = 50;

fn job_lines(stage: usize) -> [String; 4] {
    let info = format!(
        r#"{{"Stage ID":{stage},"Stage Attempt ID":0,"Stage Name":"collect at <stdin>:1","Number of Tasks":{TASKS_PER_STAGE},"RDD Info":[],"Parent IDs":[],"Details":"","Accumulables":[],"Resource Profile Id":0"#
    );
    [
        format!(
            r#"{{"Event":"SparkListenerJobStart","Job ID":{stage},"Submission Time":1795255538000,"Stage Infos":[{info}}}],"Stage IDs":[{stage}],"Properties":{{"spark.job.tags":"SparkConnect_OperationTag_User_alice_Session_39ed1fc5-ed53-4117-945b-fae9e26c0ce8_Operation_95b7284b-ed00-4470-91a8-2e06100c9fd1","spark.sql.execution.id":"3"}}}}"#
        ),
        format!(
            r#"{{"Event":"SparkListenerStageSubmitted","Stage Info":{info},"Submission Time":1795255538001}},"Properties":{{}}}}"#
        ),
        format!(
            r#"{{"Event":"SparkListenerStageCompleted","Stage Info":{info},"Submission Time":1795255538001,"Completion Time":1795255539001}}}}"#
        ),
        format!(
            r#"{{"Event":"SparkListenerJobEnd","Job ID":{stage},"Completion Time":1795255539002,"Job Result":{{"Result":"JobSucceeded"}}}}"#
        ),
    ]
}

fn fill(t: &str, stage: usize, task: usize) -> String {
    t.replace("STAGE", &stage.to_string())
        .replace("TASK", &task.to_string())
}

fn event_log_mix() -> Vec<String> {
    if let Ok(path) = std::env::var("SPARKSCOPE_BENCH_LOG") {
        let text = std::fs::read_to_string(&path).expect("SPARKSCOPE_BENCH_LOG readable");
        return text.lines().map(str::to_owned).collect();
    }
    let mut lines = Vec::new();
    for s in 0..STAGES {
        let [start, submit, done, end] = job_lines(s);
        lines.extend([start, submit]);
        lines.extend((0..TASKS_PER_STAGE).map(|t| fill(TASK_START, s, t)));
        lines.extend((0..TASKS_PER_STAGE).map(|t| fill(TASK_END, s, t)));
        lines.extend([done, end]);
    }
    lines
}

fn live_stream_mix() -> Vec<String> {
    let mut lines = vec![
        r#"{"Event":"SparkscopeHello","protocol":2,"appId":"local-1","taskEvents":"coalesced"}"#
            .to_owned(),
    ];
    for s in 0..STAGES {
        let [start, submit, done, end] = job_lines(s);
        lines.extend([start, submit]);
        lines.extend((1..=TASKS_PER_STAGE / 10).map(|t| fill(PROGRESS, s, t * 10)));
        lines.extend([done, end]);
    }
    lines
}

fn bench_mix(c: &mut Criterion, name: &str, lines: &[String]) {
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(lines.len() as u64));
    let retention = Retention::default();
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut app = AppState::new("", retention.clone());
            for l in lines {
                ingest_line(&mut app, l.as_bytes());
            }
            assert_eq!(app.stats().parse_errors, 0);
            app
        })
    });
    group.finish();
}

fn ingest(c: &mut Criterion) {
    bench_mix(c, "event_log", &event_log_mix());
    bench_mix(c, "live_stream", &live_stream_mix());
}

criterion_group!(benches, ingest);
criterion_main!(benches);
