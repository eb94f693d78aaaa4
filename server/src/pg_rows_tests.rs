//! The batch encoder against arrow-pg's value-at-a-time encoder: the same bytes for every
//! column type, format, session setting and value, NULLs and edge values included.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, LargeStringArray,
    RecordBatch, StringArray, StringViewArray, TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::FieldInfo;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::{Column, encode};

/// Seconds from the Unix epoch of 0001-01-01 and 9999-12-31, widened a little so that some
/// values fall outside the years the batch encoder writes.
const SECONDS: std::ops::Range<i64> = -62_200_000_000..253_500_000_000;

fn float64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(1.0),
        Just(1e20),
        Just(1.5e-7),
        -1e6..1e6f64,
    ]
}

fn float32() -> impl Strategy<Value = f32> {
    prop_oneof![any::<f32>(), Just(f32::NAN), Just(f32::NEG_INFINITY), Just(-0.0), -1e6..1e6f32]
}

fn zone() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![Just(None), Just(Some("UTC")), Just(Some("+00:00")), Just(Some("+05:30"))]
}

fn array(rows: usize) -> BoxedStrategy<ArrayRef> {
    prop_oneof![
        vec(option::of(any::<bool>()), rows).prop_map(|v| Arc::new(BooleanArray::from(v)) as ArrayRef),
        vec(option::of(any::<i8>()), rows).prop_map(|v| Arc::new(Int8Array::from(v)) as ArrayRef),
        vec(option::of(any::<i16>()), rows).prop_map(|v| Arc::new(Int16Array::from(v)) as ArrayRef),
        vec(option::of(any::<i32>()), rows).prop_map(|v| Arc::new(Int32Array::from(v)) as ArrayRef),
        vec(option::of(any::<i64>()), rows).prop_map(|v| Arc::new(Int64Array::from(v)) as ArrayRef),
        vec(option::of(float32()), rows).prop_map(|v| Arc::new(Float32Array::from(v)) as ArrayRef),
        vec(option::of(float64()), rows).prop_map(|v| Arc::new(Float64Array::from(v)) as ArrayRef),
        vec(option::of(".{0,8}"), rows).prop_map(|v| Arc::new(StringArray::from(v)) as ArrayRef),
        vec(option::of(".{0,8}"), rows).prop_map(|v| Arc::new(LargeStringArray::from(v)) as ArrayRef),
        vec(option::of(".{0,20}"), rows).prop_map(|v| Arc::new(StringViewArray::from(v)) as ArrayRef),
        (zone(), vec(option::of(any::<i64>()), rows))
            .prop_map(|(z, v)| Arc::new(TimestampNanosecondArray::from(v).with_timezone_opt(z)) as ArrayRef),
        (zone(), vec(option::of(SECONDS.start * 1_000_000..SECONDS.end * 1_000_000), rows))
            .prop_map(|(z, v)| Arc::new(TimestampMicrosecondArray::from(v).with_timezone_opt(z)) as ArrayRef),
        (zone(), vec(option::of(SECONDS.start * 1_000..SECONDS.end * 1_000), rows))
            .prop_map(|(z, v)| Arc::new(TimestampMillisecondArray::from(v).with_timezone_opt(z)) as ArrayRef),
        (zone(), vec(option::of(SECONDS), rows))
            .prop_map(|(z, v)| Arc::new(TimestampSecondArray::from(v).with_timezone_opt(z)) as ArrayRef),
        vec(option::of(-720_000..2_933_000i32), rows).prop_map(|v| Arc::new(Date32Array::from(v)) as ArrayRef),
    ]
    .boxed()
}

fn options() -> impl Strategy<Value = FormatOptions> {
    let date_styles = prop_oneof![Just("ISO, YMD"), Just("ISO, MDY"), Just("SQL, DMY"), Just("Postgres, MDY")];
    (date_styles, prop_oneof![Just(1i8), Just(3), Just(0), Just(-4)]).prop_map(|(date_style, digits)| {
        let mut options = FormatOptions::default();
        options.date_style = date_style.into();
        options.extra_float_digits = digits;
        options
    })
}

fn batch() -> impl Strategy<Value = RecordBatch> {
    (0usize..24).prop_flat_map(|rows| vec(array(rows), 1..5)).prop_map(|arrays| {
        let fields: Vec<Field> = arrays.iter().enumerate().map(|(i, a)| Field::new(format!("c{i}"), a.data_type().clone(), true)).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("columns match their fields")
    })
}

fn fields(batch: &RecordBatch, format: &Format, options: FormatOptions) -> Arc<Vec<FieldInfo>> {
    Arc::new(arrow_schema_to_pg_fields(batch.schema_ref(), format, Some(Arc::new(options))).expect("every test type maps to a wire type"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn batches_encode_as_arrow_pg_encodes_each_value(batch in batch(), codes in vec(0i16..2, 5), unified in 0u8..3, options in options()) {
        let format = match unified {
            0 => Format::UnifiedText,
            1 => Format::UnifiedBinary,
            _ => Format::Individual(codes[..batch.num_columns()].to_vec()),
        };
        // Floats in text are PostgreSQL's, not arrow-pg's (`floats_in_text_are_postgres_own`).
        let float_text = |i: usize| match &format {
            Format::UnifiedText => true,
            Format::UnifiedBinary => false,
            Format::Individual(codes) => codes[i] == 0,
        };
        let floats = batch.schema().fields().iter().enumerate().any(|(i, f)| f.data_type().is_floating() && float_text(i));
        prop_assume!(!floats);
        let fields = fields(&batch, &format, options);
        let ours: Vec<_> = encode(&fields, &batch).into_iter().map(|r| r.map_err(|e| e.to_string())).collect();
        let theirs: Vec<_> = encode_recordbatch(Arc::clone(&fields), batch.clone()).map(|r| r.map_err(|e| e.to_string())).collect();
        prop_assert_eq!(ours, theirs);
    }
}

/// Floats in text as PostgreSQL 15 writes them (each `want` is what it printed for the value
/// as `float8` and as `real`), at the default `extra_float_digits` of 1 and at 0.
#[test]
fn floats_in_text_are_postgres_own() {
    let cases: [(f64, &str, &str); 18] = [
        (-515574.125, "-515574.125", "-515574.12"),
        (1.0, "1", "1"),
        (1.5, "1.5", "1.5"),
        (0.1, "0.1", "0.1"),
        (-2.25, "-2.25", "-2.25"),
        (1e20, "1e+20", "1e+20"),
        (1e15, "1e+15", "1e+15"),
        (123456789012345.0, "123456789012345", "1.2345679e+14"),
        (1234567890123456.0, "1.234567890123456e+15", "1.234568e+15"),
        (0.0001, "0.0001", "0.0001"),
        (0.00001, "1e-05", "1e-05"),
        (f64::INFINITY, "Infinity", "Infinity"),
        (f64::NEG_INFINITY, "-Infinity", "-Infinity"),
        (f64::NAN, "NaN", "NaN"),
        (-0.0, "-0", "-0"),
        (1234567.0, "1234567", "1.234567e+06"),
        (123456.0, "123456", "123456"),
        (12345678901234567890.0, "1.2345678901234567e+19", "1.2345679e+19"),
    ];
    let text = |array: ArrayRef, digits: i8| {
        let schema = Schema::new(vec![Field::new("x", array.data_type().clone(), false)]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![array]).expect("batch");
        let mut options = FormatOptions::default();
        options.extra_float_digits = digits;
        let row = encode(&fields(&batch, &Format::UnifiedText, options), &batch).remove(0).expect("row");
        // A DataRow's data: each value's length, then its bytes.
        String::from_utf8(row.data.get(4..).expect("a value").to_vec()).expect("text")
    };
    for (value, float8, real) in cases {
        assert_eq!(text(Arc::new(Float64Array::from(vec![value])), 1), float8, "{value} as float8");
        assert_eq!(text(Arc::new(Float32Array::from(vec![value as f32])), 1), real, "{value} as real");
    }
    // At 0, rounded to 15 and 6 significant digits (`SET extra_float_digits = 0`); at -4 to 11
    // and 2.
    assert_eq!(text(Arc::new(Float64Array::from(vec![0.1])), 0), "0.1");
    assert_eq!(text(Arc::new(Float64Array::from(vec![1e20])), 0), "1e+20");
    assert_eq!(text(Arc::new(Float64Array::from(vec![f64::INFINITY])), 0), "Infinity");
    assert_eq!(text(Arc::new(Float32Array::from(vec![1234567.0])), 0), "1.23457e+06");
    assert_eq!(text(Arc::new(Float64Array::from(vec![2.0 / 3.0])), -4), "0.66666666667");
    assert_eq!(text(Arc::new(Float64Array::from(vec![123456789012.0])), -4), "1.2345678901e+11");
    assert_eq!(text(Arc::new(Float64Array::from(vec![100.0])), -4), "100");
}

proptest! {
    /// The shortest text reads back as the same value, for every float of either width.
    #[test]
    fn float_text_reads_back_exactly(bits in any::<u64>(), small in any::<u32>()) {
        let (wide, narrow) = (f64::from_bits(bits), f32::from_bits(small));
        let text = |array: ArrayRef| {
            let schema = Schema::new(vec![Field::new("x", array.data_type().clone(), false)]);
            let batch = RecordBatch::try_new(Arc::new(schema), vec![array]).expect("batch");
            let row = encode(&fields(&batch, &Format::UnifiedText, FormatOptions::default()), &batch).remove(0).expect("row");
            String::from_utf8(row.data.get(4..).expect("a value").to_vec()).expect("text")
        };
        let read = |t: &str| match t { "Infinity" => f64::INFINITY, "-Infinity" => f64::NEG_INFINITY, t => t.parse().expect("a number") };
        let wide_text = text(Arc::new(Float64Array::from(vec![wide])));
        prop_assert!(wide.is_nan() && wide_text == "NaN" || read(&wide_text).to_bits() == wide.to_bits(), "{} as {}", wide, wide_text);
        let narrow_text = text(Arc::new(Float32Array::from(vec![narrow])));
        let back = |t: &str| match t { "Infinity" => f32::INFINITY, "-Infinity" => f32::NEG_INFINITY, t => t.parse::<f32>().expect("a number") };
        prop_assert!(narrow.is_nan() && narrow_text == "NaN" || back(&narrow_text).to_bits() == narrow.to_bits(), "{} as {}", narrow, narrow_text);
    }
}

/// The property above holds trivially for a batch arrow-pg encodes; these columns must not be.
#[test]
fn the_common_result_types_are_encoded_here() {
    let day_ns = 86_400 * 1_000_000_000;
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(BooleanArray::from(vec![true])),
        Arc::new(Int16Array::from(vec![1])),
        Arc::new(Int32Array::from(vec![1])),
        Arc::new(Int64Array::from(vec![1])),
        Arc::new(Float32Array::from(vec![1.5])),
        Arc::new(Float64Array::from(vec![1.5])),
        Arc::new(StringArray::from(vec!["station"])),
        Arc::new(StringViewArray::from(vec!["station"])),
        Arc::new(TimestampNanosecondArray::from(vec![day_ns]).with_timezone("UTC")),
        Arc::new(TimestampNanosecondArray::from(vec![day_ns])),
        Arc::new(Date32Array::from(vec![1])),
    ];
    let schema =
        Schema::new(arrays.iter().enumerate().map(|(i, a)| Field::new(format!("c{i}"), a.data_type().clone(), false)).collect::<Vec<_>>());
    let batch = RecordBatch::try_new(Arc::new(schema), arrays).expect("columns match their fields");
    for format in [Format::UnifiedText, Format::UnifiedBinary] {
        let fields = fields(&batch, &format, FormatOptions::default());
        for (array, field) in batch.columns().iter().zip(fields.iter()) {
            assert!(Column::of(array, field).is_some(), "{} as {format:?}", array.data_type());
        }
    }
    let text = fields(&batch, &Format::UnifiedText, FormatOptions::default());
    let rows = encode(&text, &batch);
    let row = rows[0].as_ref().expect("encodes");
    let values = String::from_utf8_lossy(&row.data);
    assert!(values.contains("1970-01-02 00:00:00.000000+00"), "{values}");
    assert!(values.contains("1970-01-02 00:00:00.000000\0"), "{values}");
    assert!(values.contains("1970-01-02\0") || values.ends_with("1970-01-02"), "{values}");
}

#[test]
fn other_zones_date_styles_and_types_are_left_to_arrow_pg() {
    let arrays: Vec<ArrayRef> =
        vec![Arc::new(TimestampNanosecondArray::from(vec![0]).with_timezone("+05:30")), Arc::new(Int8Array::from(vec![1]))];
    let schema =
        Schema::new(arrays.iter().enumerate().map(|(i, a)| Field::new(format!("c{i}"), a.data_type().clone(), false)).collect::<Vec<_>>());
    let batch = RecordBatch::try_new(Arc::new(schema), arrays).expect("columns match their fields");
    let described = fields(&batch, &Format::UnifiedText, FormatOptions::default());
    for (array, field) in batch.columns().iter().zip(described.iter()) {
        assert!(Column::of(array, field).is_none(), "{}", array.data_type());
    }
    let utc: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![0]).with_timezone("UTC"));
    let schema = Schema::new(vec![Field::new("t", utc.data_type().clone(), false)]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::clone(&utc)]).expect("columns match their fields");
    let mut german = FormatOptions::default();
    german.date_style = "German, DMY".into();
    let described = fields(&batch, &Format::UnifiedText, german);
    assert!(Column::of(&utc, &described[0]).is_none());
}
