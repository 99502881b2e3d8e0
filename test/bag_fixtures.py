"""Bags in the formats real ROS 2 tools wrote, for the bag player tests (no rclpy needed to write them).

Every bag holds the same recording: 640x480 bgr8 frames on /camera/image, their JPEGs on
/camera/image/compressed, Temperature on /camera/temperature (recorded best effort + transient local) and
geometry_msgs/Twist on /cmd_vel, a type the player does not replay. Messages are CDR from rosbags'
serialiser. The sqlite3 tables and metadata.yaml are written here with rosbag2's own schemas where
rosbags' Writer does not write that version (it writes 8 and 9):
- early: rosbag2 0.0.x (Crystal, 2018) sqlite3 without metadata.yaml; topics table without
  offered_qos_profiles, type names without /msg/ (sensor_msgs/Image);
- v4 (Foxy, Galactic): QoS as a YAML string with integer enums and Foxy's "infinite" durations;
- v5 (Humble): + files, sqlite schema table (version 3) and metadata table; v6: + custom_data;
- v7 (Iron): + type_description_hash, sqlite schema 4 with message_definitions;
- v8 and v9 (QoS as a YAML list with names) and MCAP: rosbags' Writer.
"""
from __future__ import annotations

import io
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

WIDTH, HEIGHT = 640, 480
START_NS = 1_600_000_000 * 1_000_000_000  # 2020-09-13, when Foxy bags were being recorded
PERIOD_NS = 40_000_000
IMAGE, JPEG, TEMPERATURE, UNSUPPORTED = ('/camera/image', '/camera/image/compressed',
                                     '/camera/temperature', '/cmd_vel')
TYPES = {IMAGE: 'sensor_msgs/msg/Image', JPEG: 'sensor_msgs/msg/CompressedImage',
         TEMPERATURE: 'sensor_msgs/msg/Temperature', UNSUPPORTED: 'geometry_msgs/msg/Twist'}
# What discovery reports for a publisher (history unknown, depth 0), as `ros2 bag record` stores it.
RELIABLE_VOLATILE = {'reliability': 1, 'durability': 2}
BEST_EFFORT_LATCHED = {'reliability': 2, 'durability': 1}
QOS_BY_TOPIC = {IMAGE: RELIABLE_VOLATILE, JPEG: RELIABLE_VOLATILE, TEMPERATURE: BEST_EFFORT_LATCHED,
                UNSUPPORTED: RELIABLE_VOLATILE}
FOXY_INFINITE = {'sec': 2147483647, 'nsec': 4294967295}  # Fast DDS "infinite" in Foxy-era bags
INFINITE = {'sec': 9223372036, 'nsec': 854775807}


@dataclass
class Recording:
    """The messages written, in bag order: (topic, bag time ns, CDR bytes), and frame ids by topic."""
    messages: list[tuple[str, int, bytes]] = field(default_factory=list)
    frame_ids: dict[str, list[str]] = field(default_factory=dict)

    def count(self, topic: str) -> int:
        return sum(1 for t, _, _ in self.messages if t == topic)


def _typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_HUMBLE)


def recording(frames: int = 4, period_ns: int = PERIOD_NS, start_ns: int = START_NS,
              topics: tuple[str, ...] = (IMAGE, JPEG, TEMPERATURE, UNSUPPORTED)) -> Recording:
    """`frames` rounds of one message per topic in `topics`, `period_ns` apart."""
    from PIL import Image as PilImage
    ts = _typestore()
    t = ts.types
    out = Recording()
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    for i in range(frames):
        stamp = start_ns + i * period_ns
        header = t['std_msgs/msg/Header'](stamp=t['builtin_interfaces/msg/Time'](
            sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=f'bag/{i}')
        bgr = np.stack([(xs + 8 * i) % 256, (ys * 2) % 256, (xs + ys + i) % 256], -1).astype(np.uint8)
        jpeg = io.BytesIO()
        PilImage.fromarray(np.ascontiguousarray(bgr[..., ::-1])).save(jpeg, format='JPEG', quality=80)
        messages = {
            IMAGE: t['sensor_msgs/msg/Image'](header=header, height=HEIGHT, width=WIDTH, encoding='bgr8',
                                              is_bigendian=0, step=WIDTH * 3, data=bgr.reshape(-1)),
            JPEG: t['sensor_msgs/msg/CompressedImage'](header=header, format='bgr8; jpeg compressed bgr8',
                                                       data=np.frombuffer(jpeg.getvalue(), np.uint8)),
            TEMPERATURE: t['sensor_msgs/msg/Temperature'](header=header, temperature=40.0 + i, variance=0.0),
            UNSUPPORTED: t['geometry_msgs/msg/Twist'](
                linear=t['geometry_msgs/msg/Vector3'](x=float(i), y=0.0, z=0.0),
                angular=t['geometry_msgs/msg/Vector3'](x=0.0, y=0.0, z=0.0)),
        }
        for offset, topic in enumerate(topics):
            raw = bytes(ts.serialize_cdr(messages[topic], TYPES[topic]))
            out.messages.append((topic, stamp + offset * 1000, raw))
            if topic != UNSUPPORTED:
                out.frame_ids.setdefault(topic, []).append(f'bag/{i}')
    return out


def qos_yaml_string(topic: str, version: int) -> str:
    """offered_qos_profiles as rosbag2 <= 8 stores it: a YAML string of a list with integer enums."""
    infinite = FOXY_INFINITE if version == 4 else INFINITE
    profile = {'history': 3, 'depth': 0, **QOS_BY_TOPIC[topic], 'deadline': infinite,
               'lifespan': infinite, 'liveliness': 1, 'liveliness_lease_duration': infinite,
               'avoid_ros_namespace_conventions': False}
    return yaml.safe_dump([profile], sort_keys=False).strip()


# Tables as each rosbag2 release created them (rosbag2_storage_default_plugins / _sqlite3 sqlite_storage.cpp).
_MESSAGES = 'CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, ' \
            'timestamp INTEGER NOT NULL, data BLOB NOT NULL);'
_INDEX = 'CREATE INDEX timestamp_idx ON messages (timestamp ASC);'
_SCHEMA = 'CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);' \
          'CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, ' \
          'metadata TEXT NOT NULL);'
_TOPICS = 'CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, ' \
          'serialization_format TEXT NOT NULL'
_DEFINITIONS = 'CREATE TABLE message_definitions(id INTEGER PRIMARY KEY, topic_type TEXT NOT NULL, ' \
               'encoding TEXT NOT NULL, encoded_message_definition TEXT NOT NULL, ' \
               'type_description_hash TEXT NOT NULL);'
DDL = {
    'early': _TOPICS + ');' + _MESSAGES,
    4: _TOPICS + ', offered_qos_profiles TEXT NOT NULL);' + _MESSAGES + _INDEX,
    5: _SCHEMA + _TOPICS + ', offered_qos_profiles TEXT NOT NULL);' + _MESSAGES + _INDEX,
    7: _SCHEMA + _TOPICS + ', offered_qos_profiles TEXT NOT NULL, type_description_hash TEXT NOT NULL);'
    + _DEFINITIONS + _MESSAGES + _INDEX,
}
DDL[6] = DDL[5]


def _topics(rec: Recording) -> list[str]:
    return list(dict.fromkeys(topic for topic, _, _ in rec.messages))


def _type_hash(msgtype: str) -> str:
    return _typestore().hash_rihs01(msgtype)


def write_db3(db_path: Path, rec: Recording, era: str | int) -> None:
    """One sqlite3 storage file with the tables rosbag2 of that era (`DDL` key) created."""
    ts = _typestore()
    with sqlite3.connect(db_path) as db:
        db.executescript(DDL[era])
        if era in (5, 6, 7):
            schema, distro = (4, 'iron') if era == 7 else (3, 'humble')
            db.execute('INSERT INTO schema VALUES (?, ?)', (schema, distro))
        ids = {}
        for topic_id, topic in enumerate(_topics(rec), 1):
            msgtype = TYPES[topic].replace('/msg/', '/') if era == 'early' else TYPES[topic]
            row = [topic_id, topic, msgtype, 'cdr']
            if era != 'early':
                row.append(qos_yaml_string(topic, int(era)))
            if era == 7:
                row.append(_type_hash(msgtype))
                msgdef, _ = ts.generate_msgdef(msgtype, ros_version=2)
                db.execute('INSERT INTO message_definitions (topic_type, encoding, encoded_message_definition, '
                           'type_description_hash) VALUES (?, ?, ?, ?)', (msgtype, 'ros2msg', msgdef, row[-1]))
            db.execute(f'INSERT INTO topics VALUES ({", ".join("?" * len(row))})', row)
            ids[topic] = topic_id
        db.executemany('INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)',
                       [(ids[topic], stamp, raw) for topic, stamp, raw in rec.messages])
    db.close()


def bag_metadata(rec: Recording, version: int, storage: str, files: list[str]) -> dict:
    """metadata.yaml content with the fields rosbag2's yaml.hpp writes for `version`, in its order."""
    stamps = [stamp for _, stamp, _ in rec.messages]
    start, duration = min(stamps), max(stamps) - min(stamps)
    topics = []
    for topic in _topics(rec):
        meta = {'name': topic, 'type': TYPES[topic], 'serialization_format': 'cdr',
                'offered_qos_profiles': qos_yaml_string(topic, version)}
        if version >= 7:
            meta['type_description_hash'] = _type_hash(TYPES[topic])
        topics.append({'topic_metadata': meta, 'message_count': rec.count(topic)})
    info = {'version': version, 'storage_identifier': storage, 'duration': {'nanoseconds': duration},
            'starting_time': {'nanoseconds_since_epoch': start}, 'message_count': len(stamps),
            'topics_with_message_count': topics, 'compression_format': '', 'compression_mode': '',
            'relative_file_paths': files}
    if version >= 5:
        info['files'] = [{'path': files[0], 'starting_time': {'nanoseconds_since_epoch': start},
                          'duration': {'nanoseconds': duration}, 'message_count': len(stamps)}]
    if version >= 6:
        info['custom_data'] = {}
    if version >= 8:
        info['ros_distro'] = 'jazzy'
    return {'rosbag2_bagfile_information': info}


def write_early_bag(folder: Path, rec: Recording | None = None) -> Recording:
    """A Crystal-era bag: folder/<name>_0.db3 in the early schema, old type names, no metadata.yaml."""
    rec = rec or recording()
    folder.mkdir(parents=True)
    write_db3(folder / f'{folder.name}_0.db3', rec, 'early')
    return rec


def write_versioned_bag(folder: Path, version: int, storage: str = 'sqlite3',
                        rec: Recording | None = None) -> Recording:
    """A bag folder with metadata.yaml `version` (4..9); sqlite3 for every version, mcap for 8 and 9."""
    rec = rec or recording()
    if version >= 8:
        _write_with_rosbags(folder, version, storage, rec)
        return rec
    assert storage == 'sqlite3', 'rosbag2 wrote mcap only with metadata version 8 or later'
    folder.mkdir(parents=True)
    db_name = f'{folder.name}_0.db3'
    write_db3(folder / db_name, rec, version)
    metadata = bag_metadata(rec, version, storage, [db_name])
    if version >= 5:  # rosbag2 >= Humble also keeps the metadata in the database
        with sqlite3.connect(folder / db_name) as db:
            db.execute('INSERT INTO metadata (metadata_version, metadata) VALUES (?, ?)',
                       (version, yaml.safe_dump(metadata['rosbag2_bagfile_information'], sort_keys=False)))
        db.close()
    (folder / 'metadata.yaml').write_text(yaml.safe_dump(metadata, sort_keys=False))
    return rec


def _write_with_rosbags(folder: Path, version: int, storage: str, rec: Recording) -> None:
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.rosbag2 import StoragePlugin, Writer
    ts = _typestore()
    infinite = QosTime(INFINITE['sec'], INFINITE['nsec'])
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(folder, version=version, storage_plugin=plugin) as writer:
        connections = {}
        for topic in _topics(rec):
            qos = QOS_BY_TOPIC[topic]
            profile = Qos(QosHistory.UNKNOWN, 0, QosReliability(qos['reliability']),
                          QosDurability(qos['durability']), infinite, infinite, QosLiveliness.AUTOMATIC,
                          infinite, False)
            connections[topic] = writer.add_connection(topic, TYPES[topic], typestore=ts,
                                                       offered_qos_profiles=[profile])
        for topic, stamp, raw in rec.messages:
            writer.write(connections[topic], stamp, raw)


def storage_file(folder: Path) -> Path:
    """The one .db3 / .mcap file of a bag folder."""
    files = [p for p in folder.iterdir() if p.suffix in ('.db3', '.mcap')]
    assert len(files) == 1, files
    return files[0]
