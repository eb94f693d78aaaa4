"""paho-mqtt, the Python MQTT client, publishing to isobar's listener: MQTT 3.1.1 and 5, QoS 0,
1 and 2, each publish waited for. Usage: mqtt_clients.py MQTT_PORT. Prints nothing; exits non-zero when a
publish is not acknowledged."""

import json
import sys

import paho.mqtt.client as mqtt

port = int(sys.argv[1])
base_ms = 1_700_000_000_000
n = 0
for version, name in [(mqtt.MQTTv311, "paho-311"), (mqtt.MQTTv5, "paho-5")]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=version)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    for qos in (0, 1, 2):
        for _ in range(10):
            payload = json.dumps({"sensor_timestamp": base_ms + n * 1000, "sensor_value": n, "direction": 1})
            info = client.publish(f"weather/wa/seattle/st-3/temperature/{name}", payload, qos=qos)
            info.wait_for_publish(timeout=30)
            if not info.is_published():
                sys.exit(f"{name}: publish {n} at QoS {qos} was not acknowledged")
            n += 1
    client.disconnect()
    client.loop_stop()
