// TensorBoard event files, written and read without a protobuf library.
//
// An event file is a sequence of TFRecords, each holding one serialized tensorflow.Event:
//   uint64 length | uint32 masked_crc32c(length bytes) | length bytes of data | uint32
//   masked_crc32c(data)
// all little-endian. The first event carries file_version "brain.Event:2"; each later one a
// Summary of scalars (Summary.Value{tag = 1, simple_value = 2}). The encoder emits protoc's
// canonical bytes: fields in number order, proto3 defaults left out, oneof members (file_version,
// summary, simple_value) always written once set, so a value of 0.0 still reaches TensorBoard.
#ifndef GEMC_TB_EVENTS_H
#define GEMC_TB_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init ~0, final xor ~0), table-driven.
uint32_t crc32c(const void *data, size_t n);
// crc32c(a||b) == crc32c_extend(crc32c(a), b, nb)
uint32_t crc32c_extend(uint32_t crc, const void *data, size_t n);
// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8, and its inverse. Masking keeps
// a CRC of data that itself holds CRCs from being trivially related to it.
uint32_t crc32c_mask(uint32_t crc);
uint32_t crc32c_unmask(uint32_t masked);

typedef struct {
    FILE *f;
    char *path; // DIR/events.out.tfevents.<unix seconds>.<hostname>.<pid>
} TbWriter;

// Creates dir (and parents), opens a new event file there and writes the first event (wall_time,
// step 0, file_version "brain.Event:2"). Returns 0, or -1 with the error set.
int tb_open(TbWriter *w, const char *dir, double wall_time);
// One Event {wall_time, step, summary{value{tag, simple_value}...}} holding n scalars, written as
// one TFRecord with a single fwrite, then flushed. Returns 0 or -1. n == 0 writes nothing.
int tb_write_scalars(TbWriter *w, long step, double wall_time, int n, const char *const *tags,
                     const float *values);
// fclose + free; safe on a zeroed or already closed writer.
void tb_close(TbWriter *w);

// The serialized Event message, without framing or I/O. *out is malloc'd; returns its length.
size_t tb_encode_scalars_event(long step, double wall_time, int n, const char *const *tags,
                               const float *values, uint8_t **out);
size_t tb_encode_version_event(double wall_time, const char *file_version, uint8_t **out);

// Every record of an event file, framing and both CRCs checked, decoded. A truncated final record
// (a killed writer) ends the read with *truncated = 1 and no error; a CRC mismatch or malformed
// protobuf is an error naming the file and byte offset. Returns 0 or -1.
typedef struct {
    char *tag;
    float value;
} TbValue;
typedef struct {
    double wall_time;
    long step;
    char *file_version; // NULL unless a file_version event
    TbValue *values;    // the summary's simple values (values of other kinds are skipped)
    int n_values;
} TbEvent;
int tb_read_file(const char *path, TbEvent **events, int *n_events, int *truncated);
void tb_events_free(TbEvent *events, int n);

#endif
